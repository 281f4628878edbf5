package lease

import (
	"testing"
	"unsafe"
)

// TestEntrySize keeps the table's per-lease allocations at their size: an
// entry in one 256-byte allocation (Go's size classes go 256, then 288)
// and an 8-byte internal index key. Adding a field to Lease or entry that
// crosses these costs 10 % more table memory at 10,000 leases; if it is
// worth it, change the numbers here and say so in the bench report.
func TestEntrySize(t *testing.T) {
	if n := unsafe.Sizeof(entry{}); n > 256 {
		t.Errorf("entry is %d bytes, over the 256-byte size class", n)
	}
	if n := unsafe.Sizeof(internalKey{}); n > 8 {
		t.Errorf("internalKey is %d bytes, want 8", n)
	}
}
