package store

import "golang.org/x/sys/unix"

// unmapPages tells the kernel that the process no longer needs the pages of
// the mapping at addr (size bytes): they leave its resident set and are
// read again from the page cache, or the file, when next touched. The
// mapping is bbolt's read-only shared mapping of the database file, so
// nothing is lost.
func unmapPages(addr uintptr, size int64) error {
	if addr == 0 || size <= 0 {
		return nil
	}
	if _, _, errno := unix.Syscall(unix.SYS_MADVISE, addr, uintptr(size), unix.MADV_DONTNEED); errno != 0 {
		return errno
	}
	return nil
}
