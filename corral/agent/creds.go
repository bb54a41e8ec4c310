package main

// File operations run with the requesting user's permissions: asUser runs fn
// on a fresh goroutine locked to its OS thread whose credentials were switched
// to the user with raw, per-thread syscalls (Go's syscall.Setuid & co. apply
// to every thread, so they are not used). Permission checks then happen in
// the kernel, exactly as if the user did the operation: EACCES, and files
// created get the user's ownership.
//
// The switch sets the supplementary groups, then the effective (and hence
// filesystem) gid and uid, keeping real and saved ids 0 so the thread can
// switch back. Moving the euid off 0 clears the thread's effective
// capabilities (DAC_OVERRIDE, FOWNER, CHOWN...); moving it back to 0 restores
// them from the permitted set, which is never touched. setfsuid(2) would be
// narrower but gVisor answers it with ENOSYS; setresuid/setresgid/setgroups
// are per-task in both the Linux kernel and gVisor's Sentry, and one code path
// serves both runtimes.
//
// If switching back fails the thread is never unlocked: Go then kills it when
// the goroutine exits, so no other goroutine ever runs with the user's ids.
// The Go runtime starts new threads from its template thread (never by cloning
// a locked one), so the user's ids cannot leak into a new thread either.

import (
	"fmt"
	"os"
	"runtime"
	"syscall"
	"unsafe"
)

const keepID = ^uintptr(0) // -1: leave this id unchanged

// switchCreds is on when the agent is root (in a sandbox, or `go test` as
// root); an unprivileged agent can only act as itself anyway.
var switchCreds = os.Geteuid() == 0

// rootGroups are the agent's own supplementary groups, restored after each switch.
var rootGroups = func() []uint32 {
	g := make([]uint32, 256)
	n, _, e := syscall.RawSyscall(syscall.SYS_GETGROUPS, uintptr(len(g)), uintptr(unsafe.Pointer(&g[0])), 0)
	if e != 0 {
		return nil
	}
	return g[:n]
}()

func setGroups(g []uint32) syscall.Errno {
	var p unsafe.Pointer
	if len(g) > 0 {
		p = unsafe.Pointer(&g[0])
	}
	_, _, e := syscall.RawSyscall(syscall.SYS_SETGROUPS, uintptr(len(g)), uintptr(p), 0)
	return e
}

// becomeUser switches the calling thread's effective ids and groups to u.
func becomeUser(u *userInfo) error {
	if e := setGroups(u.Groups); e != 0 {
		return fmt.Errorf("setgroups: %w", e)
	}
	if _, _, e := syscall.RawSyscall(syscall.SYS_SETRESGID, keepID, uintptr(u.GID), keepID); e != 0 {
		return fmt.Errorf("setresgid: %w", e)
	}
	if _, _, e := syscall.RawSyscall(syscall.SYS_SETRESUID, keepID, uintptr(u.UID), keepID); e != 0 {
		return fmt.Errorf("setresuid: %w", e)
	}
	return nil
}

// becomeRoot undoes becomeUser (the uid first: it brings back CAP_SETGID).
func becomeRoot() error {
	if _, _, e := syscall.RawSyscall(syscall.SYS_SETRESUID, keepID, 0, keepID); e != 0 {
		return fmt.Errorf("setresuid: %w", e)
	}
	if _, _, e := syscall.RawSyscall(syscall.SYS_SETRESGID, keepID, 0, keepID); e != 0 {
		return fmt.Errorf("setresgid: %w", e)
	}
	if e := setGroups(rootGroups); e != 0 {
		return fmt.Errorf("setgroups: %w", e)
	}
	return nil
}

// asUser runs fn with u's permissions and returns its error. Root (and every
// user when the agent is not root) runs fn directly, on the caller's goroutine.
// fn should not block on the network: it holds an OS thread meanwhile.
func asUser(u *userInfo, fn func() error) error {
	if !switchCreds || u == nil || u.UID == 0 {
		return fn()
	}
	type result struct {
		err       error
		recovered interface{}
		panicked  bool
	}
	done := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		var res result
		defer func() {
			if p := recover(); p != nil {
				res = result{recovered: p, panicked: true}
			}
			if err := becomeRoot(); err != nil {
				// Stay locked: this thread dies with the goroutine.
				fmt.Fprintf(os.Stderr, "corral-agent: cannot switch a thread back to root (%v); dropping it\n", err)
			} else {
				runtime.UnlockOSThread()
			}
			done <- res
		}()
		if err := becomeUser(u); err != nil {
			res.err = errf("internal", "cannot act as user %q: %v", u.Name, err)
			return
		}
		res.err = fn()
	}()
	res := <-done
	if res.panicked {
		panic(res.recovered)
	}
	return res.err
}
