package main

import (
	"os"
	"sync"
	"syscall"
	"time"
)

type startRequest struct {
	Process *processConfig `json:"process"`
	Pty     *ptyConfig     `json:"pty,omitempty"`
	Tag     *string        `json:"tag,omitempty"`
	Stdin   *bool          `json:"stdin,omitempty"`
}

// spawn starts the process described by req as user u. timeout > 0 kills it
// (the whole group) when it expires, which is what the Connect deadline of a
// Start call means for envd.
func (a *agent) spawn(req *startRequest, u *userInfo, timeout time.Duration) (*process, *subscriber, error) {
	cfg := req.Process
	if cfg == nil || cfg.Cmd == "" {
		return nil, nil, errf("invalid_argument", "process.cmd is required")
	}
	cwd := u.Home
	a.mu.RLock()
	if a.defaultWorkdir != "" {
		cwd = a.defaultWorkdir
	}
	a.mu.RUnlock()
	if cfg.Cwd != nil && *cfg.Cwd != "" {
		cwd = expandPath(*cfg.Cwd, u)
	}
	if st, err := os.Stat(cwd); err != nil || !st.IsDir() {
		if cfg.Cwd != nil && *cfg.Cwd != "" {
			return nil, nil, errf("invalid_argument", "cwd %q: %v", cwd, errNoCwd)
		}
		cwd = "/" // a user without a home directory still gets to run
	}
	if cmd, ok := warmCommand(req); ok {
		if p, sub, ok := a.claimWarm(req, u, cwd, cmd, timeout); ok {
			return p, sub, nil
		}
	}
	path := cfg.Cmd
	env := a.buildEnv(u, cfg.Envs)
	if !containsSlash(path) {
		p, err := lookPath(path, env)
		if err != nil {
			return nil, nil, errf("invalid_argument", "%v", err)
		}
		path = p
	}

	attr := &syscall.SysProcAttr{}
	if os.Getuid() == 0 && (u.UID != 0 || u.GID != 0) {
		attr.Credential = &syscall.Credential{Uid: u.UID, Gid: u.GID, Groups: u.Groups}
	}
	p := &process{
		tag:    req.Tag,
		config: *cfg,
		subs:   map[*subscriber]struct{}{},
		exitCh: make(chan syscall.WaitStatus, 1),
		done:   make(chan struct{}),
	}
	var files []*os.File     // the child's 0,1,2
	var childEnds []*os.File // closed in the parent after the fork
	var outputs []*os.File   // read by pumps
	var kinds []string
	cleanup := func() {
		for _, f := range append(childEnds, outputs...) {
			f.Close()
		}
		if p.stdin != nil {
			p.stdin.Close()
		}
	}

	if req.Pty != nil {
		master, slave, err := openPTY(req.Pty.Size)
		if err != nil {
			return nil, nil, errf("internal", "open pty: %v", err)
		}
		p.ptyMaster = master
		files = []*os.File{slave, slave, slave}
		childEnds = []*os.File{slave}
		outputs = []*os.File{master}
		kinds = []string{"pty"}
		attr.Setsid = true
		attr.Setctty = true
		attr.Ctty = 0
	} else {
		var stdin *os.File
		if req.Stdin != nil && *req.Stdin {
			r, w, err := os.Pipe()
			if err != nil {
				return nil, nil, errf("internal", "pipe: %v", err)
			}
			stdin, p.stdin = r, w
		} else {
			f, err := os.Open(os.DevNull)
			if err != nil {
				return nil, nil, errf("internal", "open %s: %v", os.DevNull, err)
			}
			stdin = f
		}
		childEnds = append(childEnds, stdin)
		outR, outW, err := os.Pipe()
		if err != nil {
			cleanup()
			return nil, nil, errf("internal", "pipe: %v", err)
		}
		childEnds, outputs = append(childEnds, outW), append(outputs, outR)
		errR, errW, err := os.Pipe()
		if err != nil {
			cleanup()
			return nil, nil, errf("internal", "pipe: %v", err)
		}
		childEnds, outputs = append(childEnds, errW), append(outputs, errR)
		files = []*os.File{stdin, outW, errW}
		kinds = []string{"stdout", "stderr"}
		// Own process group: a kill reaches the command's children too.
		attr.Setpgid = true
	}

	// Subscribe the caller before the first byte can be produced.
	sub, _ := p.subscribe()
	argv := append([]string{cfg.Cmd}, cfg.Args...)
	pid, err := a.reaper.start(func() (int, error) {
		proc, err := os.StartProcess(path, argv, &os.ProcAttr{Dir: cwd, Env: env, Files: files, Sys: attr})
		if err != nil {
			return 0, err
		}
		return proc.Pid, nil
	}, p.exitCh)
	for _, f := range childEnds {
		f.Close()
	}
	if err != nil {
		childEnds = nil
		cleanup()
		return nil, nil, errf("invalid_argument", "start %s: %v", cfg.Cmd, err)
	}
	p.pid = pid
	a.procs.add(p)
	if timeout > 0 {
		p.timer = time.AfterFunc(timeout, func() { _ = p.signal(syscall.SIGKILL) })
	}
	var wg sync.WaitGroup
	for i, f := range outputs {
		wg.Add(1)
		go p.pump(f, kinds[i], &wg)
	}
	go p.finish(a, outputs, &wg)
	return p, sub, nil
}

func containsSlash(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] == '/' {
			return true
		}
	}
	return false
}

// lookPath resolves cmd against the PATH of the child's environment.
func lookPath(cmd string, env []string) (string, error) {
	pathVar := ""
	for _, kv := range env {
		if len(kv) > 5 && kv[:5] == "PATH=" {
			pathVar = kv[5:]
		}
	}
	start := 0
	for i := 0; i <= len(pathVar); i++ {
		if i == len(pathVar) || pathVar[i] == ':' {
			dir := pathVar[start:i]
			start = i + 1
			if dir == "" {
				dir = "."
			}
			cand := dir + "/" + cmd
			if st, err := os.Stat(cand); err == nil && !st.IsDir() && st.Mode()&0o111 != 0 {
				return cand, nil
			}
		}
	}
	return "", errf("not_found", "executable %q not found in PATH", cmd)
}
