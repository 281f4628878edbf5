package agent

import (
	"bytes"
	"errors"
	"strconv"
)

// proc is what Run needs from /proc/<pid>/stat.
type proc struct {
	pid, ppid  int
	pgrp, sess int    // process group and session
	state      byte   // 'R', 'S', 'Z', ...
	start      uint64 // start time in clock ticks after boot; with pid, a process's identity
}

var errBadStat = errors.New("malformed /proc/<pid>/stat")

// parseStat parses the contents of /proc/<pid>/stat (proc(5)). The command
// name in parentheses may itself hold spaces and parentheses, so the fields
// are counted from the last ')'.
func parseStat(b []byte) (proc, error) {
	open := bytes.IndexByte(b, '(')
	closing := bytes.LastIndexByte(b, ')')
	if open <= 0 || closing < open {
		return proc{}, errBadStat
	}
	pid, err := strconv.Atoi(string(bytes.TrimSpace(b[:open])))
	if err != nil {
		return proc{}, errBadStat
	}
	// Fields from 3 on: state ppid pgrp session tty_nr tpgid flags minflt
	// cminflt majflt cmajflt utime stime cutime cstime priority nice
	// num_threads itrealvalue starttime ...
	f := bytes.Fields(b[closing+1:])
	const stateIdx, ppidIdx, pgrpIdx, sessIdx, startIdx = 0, 1, 2, 3, 19
	if len(f) <= startIdx || len(f[stateIdx]) != 1 {
		return proc{}, errBadStat
	}
	p := proc{pid: pid, state: f[stateIdx][0]}
	for _, x := range []struct {
		idx int
		v   *int
	}{{ppidIdx, &p.ppid}, {pgrpIdx, &p.pgrp}, {sessIdx, &p.sess}} {
		if *x.v, err = strconv.Atoi(string(f[x.idx])); err != nil {
			return proc{}, errBadStat
		}
	}
	if p.start, err = strconv.ParseUint(string(f[startIdx]), 10, 64); err != nil {
		return proc{}, errBadStat
	}
	return p, nil
}

// parseSocketLink returns INODE from a /proc/<pid>/fd link "socket:[INODE]".
func parseSocketLink(s string) (uint64, bool) {
	const pre, suf = "socket:[", "]"
	if len(s) <= len(pre)+len(suf) || s[:len(pre)] != pre || s[len(s)-1:] != suf {
		return 0, false
	}
	v, err := strconv.ParseUint(s[len(pre):len(s)-1], 10, 64)
	return v, err == nil
}

// descendants returns the program's process tree: mainPID (when alive) and
// every process below it, plus the orphans reparented to self (Run is a
// child subreaper) that belong to the program: those in known (same pid
// and start time) and those for which ours says so. The result maps pid to
// process.
//
// A zombie orphan has no environment left for ours to read. It counts as
// the program's when it led a session or process group, other than self's,
// that a process of the program is in: the middle process of a daemon's
// double fork, which called setsid() and exited before a poll saw it.
func descendants(procs []proc, self, mainPID int, known map[int]uint64, ours func(proc) bool) map[int]proc {
	children := map[int][]proc{}
	var queue, zombies []proc
	var me proc
	for _, p := range procs {
		children[p.ppid] = append(children[p.ppid], p)
		switch {
		case p.pid == self:
			me = p
		case p.pid == mainPID:
			queue = append(queue, p)
		case p.ppid != self:
		case known[p.pid] == p.start && p.start != 0:
			queue = append(queue, p)
		case p.state == 'Z':
			zombies = append(zombies, p)
		case ours(p):
			queue = append(queue, p)
		}
	}
	tree := map[int]proc{}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		if _, seen := tree[p.pid]; seen {
			continue
		}
		tree[p.pid] = p
		queue = append(queue, children[p.pid]...)
	}
	if len(zombies) == 0 {
		return tree
	}
	sessions, groups := map[int]bool{}, map[int]bool{}
	for _, p := range tree {
		sessions[p.sess] = p.sess != me.sess
		groups[p.pgrp] = p.pgrp != me.pgrp
	}
	for _, z := range zombies {
		if (z.sess == z.pid && sessions[z.sess]) || (z.pgrp == z.pid && groups[z.pgrp]) {
			tree[z.pid] = z
		}
	}
	return tree
}
