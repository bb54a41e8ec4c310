package main

// One reaper for every child: the agent is PID 1 in a sandbox, so orphans are
// re-parented to it and must be waited for. Mixing exec.Cmd.Wait with a
// wait4(-1) loop races (whoever waits first steals the status), so the agent
// never uses exec.Cmd: processes are started with os.StartProcess while the
// registry lock is held, and the reaper dispatches each status under the same
// lock, so a child that dies before it was registered is still found.

import (
	"os"
	"os/signal"
	"sync"
	"syscall"
)

type reaper struct {
	mu      sync.Mutex
	waiters map[int]chan<- syscall.WaitStatus
}

var (
	theReaper     *reaper
	theReaperOnce sync.Once
)

// newReaper returns the process-wide reaper: two wait4(-1) loops in one
// process would steal each other's statuses.
func newReaper() *reaper {
	theReaperOnce.Do(func() { theReaper = startReaper() })
	return theReaper
}

func startReaper() *reaper {
	r := &reaper{waiters: map[int]chan<- syscall.WaitStatus{}}
	// Outside a sandbox (tests) the agent is not PID 1; becoming a subreaper
	// gives it the same duty for its descendants' orphans.
	const prSetChildSubreaper = 36
	_, _, _ = syscall.RawSyscall(syscall.SYS_PRCTL, prSetChildSubreaper, 1, 0)
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGCHLD)
	go r.loop(sig)
	return r
}

// start runs fn (which forks) and registers the child's exit channel before
// the reaper can dispatch its status.
func (r *reaper) start(fn func() (int, error), ch chan<- syscall.WaitStatus) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	pid, err := fn()
	if err != nil {
		return 0, err
	}
	r.waiters[pid] = ch
	return pid, nil
}

func (r *reaper) loop(sig <-chan os.Signal) {
	for {
		r.reapAll()
		<-sig
	}
}

func (r *reaper) reapAll() {
	for {
		var ws syscall.WaitStatus
		pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
		if err == syscall.EINTR {
			continue
		}
		if err != nil || pid <= 0 {
			return
		}
		if !ws.Exited() && !ws.Signaled() {
			continue // stopped/continued: not an exit
		}
		r.mu.Lock()
		ch, ok := r.waiters[pid]
		delete(r.waiters, pid)
		r.mu.Unlock()
		if ok {
			ch <- ws // buffered(1): never blocks the reaper
		}
	}
}
