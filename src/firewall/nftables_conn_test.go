//go:build linux

package firewall

import (
	"testing"

	"github.com/google/nftables"
)

// TestLastingConnRedials checks that the backend's one netlink socket is
// replaced after a failed call, and that the backend works on afterwards.
func TestLastingConnRedials(t *testing.T) {
	ns := newNetNS(t)
	b := newKernelBackend(t, KindNFTables, ns, "wan0").(*nftBackend)
	must(t, "Sync", b.Sync(nil))
	lc := b.conn.(*lastingConn)
	first := lc.conn()
	// Deleting an element that is not there fails the batch.
	set := b.sets(b.table())[nftDNATMap(TCP)]
	if err := lc.SetDeleteElements(set, []nftables.SetElement{{Key: []byte{0x1f, 0x90, 0, 0}}}); err != nil {
		t.Fatal(err)
	}
	if err := lc.Flush(); err == nil {
		t.Fatal("deleting a missing element succeeded")
	}
	if lc.conn() == first {
		t.Fatal("the socket was kept after a failed call")
	}
	p := Pinhole{Proto: TCP, ExternalPort: 8080, InternalAddr: mustAddr("198.51.100.2"), InternalPort: 80}
	must(t, "Add after the failure", b.Add(p))
	wantInstalled(t, b, []Pinhole{p})
}
