package sockdiag

import (
	"net"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// inodeOf returns the socket inode of c, as fstat(2) reports it.
func inodeOf(t *testing.T, c syscall.Conn) uint32 {
	t.Helper()
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var st unix.Stat_t
	var serr error
	if err := rc.Control(func(fd uintptr) { serr = unix.Fstat(int(fd), &st) }); err != nil || serr != nil {
		t.Fatal(err, serr)
	}
	return uint32(st.Ino)
}

// TestDumpLoopback lists real sockets; it only listens on 127.0.0.1, so it
// needs neither root nor a network namespace.
func TestDumpLoopback(t *testing.T) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()

	tests := []struct {
		name  string
		req   Request
		inode uint32
		addr  string
		state uint8
	}{
		{"tcp", Request{AFInet, ProtoTCP, States(StateListen)}, inodeOf(t, ln.(*net.TCPListener)), ln.Addr().String(), StateListen},
		{"udp", Request{AFInet, ProtoUDP, States(StateClose)}, inodeOf(t, pc.(*net.UDPConn)), pc.LocalAddr().String(), StateClose},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			socks, err := Dump(tt.req)
			if err != nil {
				t.Fatal(err)
			}
			for _, s := range socks {
				if s.Inode == tt.inode {
					if s.Local.String() != tt.addr || s.State != tt.state || s.Protocol != tt.req.Protocol {
						t.Errorf("socket %+v, want %s state %d", s, tt.addr, tt.state)
					}
					return
				}
			}
			t.Errorf("inode %d (%s) not among %d sockets", tt.inode, tt.addr, len(socks))
		})
	}
}
