package main

// Handlers of the process.Process Connect service.

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"syscall"
	"time"
)

type eventResponse struct {
	Event *processEvent `json:"event"`
}

func (a *agent) registerProcessService(mux *http.ServeMux) {
	const pfx = "/process.Process/"
	mux.Handle(pfx+"Start", serverStream(a.rpcStart))
	mux.Handle(pfx+"Connect", serverStream(a.rpcConnect))
	mux.Handle(pfx+"List", unary(a.rpcList))
	mux.Handle(pfx+"SendInput", unary(a.rpcSendInput))
	mux.Handle(pfx+"StreamInput", http.HandlerFunc(a.rpcStreamInput))
	mux.Handle(pfx+"CloseStdin", unary(a.rpcCloseStdin))
	mux.Handle(pfx+"SendSignal", unary(a.rpcSendSignal))
	mux.Handle(pfx+"Update", unary(a.rpcUpdate))
}

func (a *agent) rpcStart(r *http.Request, req *startRequest, sw *streamWriter) error {
	u, err := a.resolveUser(requestUserName(r))
	if err != nil {
		return err
	}
	p, sub, err := a.spawn(req, u, connectTimeout(r))
	if err != nil {
		return err
	}
	// The process's own deadline ends the stream via its end event.
	return a.streamEvents(r, sw, p, sub, 0)
}

type connectRequest struct {
	Process *processSelector `json:"process"`
}

func (a *agent) rpcConnect(r *http.Request, req *connectRequest, sw *streamWriter) error {
	p, err := a.procs.find(req.Process)
	if err != nil {
		return err
	}
	sub, ok := p.subscribe()
	if !ok {
		return errf("not_found", "process %d already ended", p.pid)
	}
	return a.streamEvents(r, sw, p, sub, connectTimeout(r))
}

// streamEvents forwards the process's events to one stream: start first, then
// output, then end. Leaving early (client gone, deadline) only unsubscribes:
// the process keeps running.
func (a *agent) streamEvents(r *http.Request, sw *streamWriter, p *process, sub *subscriber, deadline time.Duration) error {
	defer p.unsubscribe(sub)
	if err := sw.Send(eventResponse{&processEvent{Start: &startEvent{Pid: uint32(p.pid)}}}); err != nil {
		return err
	}
	var tick <-chan time.Time
	if iv := keepaliveInterval(r); iv > 0 {
		t := time.NewTicker(iv)
		defer t.Stop()
		tick = t.C
	}
	var expire <-chan time.Time
	if deadline > 0 {
		t := time.NewTimer(deadline)
		defer t.Stop()
		expire = t.C
	}
	for {
		select {
		case ev := <-sub.ch:
			if err := sw.Send(eventResponse{&ev}); err != nil {
				return err
			}
			if ev.End != nil {
				return nil
			}
		case <-tick:
			if err := sw.Send(eventResponse{&processEvent{Keepalive: &struct{}{}}}); err != nil {
				return err
			}
		case <-expire:
			return errf("deadline_exceeded", "stream deadline exceeded")
		case <-r.Context().Done():
			return errf("canceled", "client went away")
		}
	}
}

type processInfo struct {
	Config processConfig `json:"config"`
	Pid    uint32        `json:"pid"`
	Tag    *string       `json:"tag,omitempty"`
}

type listResponse struct {
	Processes []processInfo `json:"processes"`
}

func (a *agent) rpcList(r *http.Request, _ *struct{}) (*listResponse, error) {
	out := &listResponse{Processes: []processInfo{}}
	for _, p := range a.procs.list() {
		out.Processes = append(out.Processes, processInfo{Config: p.config, Pid: uint32(p.pid), Tag: p.tag})
	}
	return out, nil
}

type processInput struct {
	Stdin []byte `json:"stdin,omitempty"`
	Pty   []byte `json:"pty,omitempty"`
}

type sendInputRequest struct {
	Process *processSelector `json:"process"`
	Input   *processInput    `json:"input"`
}

func (a *agent) writeInput(p *process, in *processInput) error {
	if in == nil {
		return nil
	}
	if in.Pty != nil {
		if p.ptyMaster == nil {
			return errf("failed_precondition", "process %d has no pty", p.pid)
		}
		if _, err := p.ptyMaster.Write(in.Pty); err != nil {
			return errf("internal", "write pty: %v", err)
		}
		return nil
	}
	if in.Stdin != nil {
		if p.ptyMaster != nil {
			// Being lenient matches what clients expect: stdin of a PTY is the PTY.
			if _, err := p.ptyMaster.Write(in.Stdin); err != nil {
				return errf("internal", "write pty: %v", err)
			}
			return nil
		}
		p.stdinMu.Lock()
		defer p.stdinMu.Unlock()
		if p.stdin == nil {
			return errf("failed_precondition", "stdin of process %d is not open (start it with stdin: true)", p.pid)
		}
		if _, err := p.stdin.Write(in.Stdin); err != nil {
			return errf("internal", "write stdin: %v", err)
		}
	}
	return nil
}

func (a *agent) rpcSendInput(r *http.Request, req *sendInputRequest) (*struct{}, error) {
	p, err := a.procs.find(req.Process)
	if err != nil {
		return nil, err
	}
	return &struct{}{}, a.writeInput(p, req.Input)
}

type selectorRequest struct {
	Process *processSelector `json:"process"`
}

func (a *agent) rpcCloseStdin(r *http.Request, req *selectorRequest) (*struct{}, error) {
	p, err := a.procs.find(req.Process)
	if err != nil {
		return nil, err
	}
	if p.ptyMaster != nil {
		return nil, errf("failed_precondition", "process %d is a pty: send Ctrl+D (0x04) instead", p.pid)
	}
	if !p.closeStdin() {
		return nil, errf("failed_precondition", "stdin of process %d is not open", p.pid)
	}
	return &struct{}{}, nil
}

// signalValue accepts the enum by name ("SIGNAL_SIGKILL") or number (9).
type signalValue int

func (s *signalValue) UnmarshalJSON(b []byte) error {
	var name string
	if err := json.Unmarshal(b, &name); err == nil {
		switch name {
		case "SIGNAL_SIGKILL":
			*s = 9
		case "SIGNAL_SIGTERM":
			*s = 15
		case "SIGNAL_UNSPECIFIED":
			*s = 0
		default:
			n, err := strconv.Atoi(name)
			if err != nil {
				return errf("invalid_argument", "unknown signal %q", name)
			}
			*s = signalValue(n)
		}
		return nil
	}
	var n int
	if err := json.Unmarshal(b, &n); err != nil {
		return err
	}
	*s = signalValue(n)
	return nil
}

type sendSignalRequest struct {
	Process *processSelector `json:"process"`
	Signal  signalValue      `json:"signal"`
}

func (a *agent) rpcSendSignal(r *http.Request, req *sendSignalRequest) (*struct{}, error) {
	p, err := a.procs.find(req.Process)
	if err != nil {
		return nil, err
	}
	var sig syscall.Signal
	switch req.Signal {
	case 9:
		sig = syscall.SIGKILL
	case 15:
		sig = syscall.SIGTERM
	default:
		return nil, errf("invalid_argument", "unsupported signal %d", req.Signal)
	}
	if err := p.signal(sig); err != nil {
		return nil, errf("internal", "signal %d: %v", p.pid, err)
	}
	return &struct{}{}, nil
}

type updateRequest struct {
	Process *processSelector `json:"process"`
	Pty     *ptyConfig       `json:"pty,omitempty"`
}

func (a *agent) rpcUpdate(r *http.Request, req *updateRequest) (*struct{}, error) {
	p, err := a.procs.find(req.Process)
	if err != nil {
		return nil, err
	}
	if req.Pty != nil && req.Pty.Size != nil {
		if p.ptyMaster == nil {
			return nil, errf("failed_precondition", "process %d has no pty", p.pid)
		}
		if err := setWinsize(p.ptyMaster, req.Pty.Size); err != nil {
			return nil, errf("internal", "resize: %v", err)
		}
	}
	return &struct{}{}, nil
}

type streamInputRequest struct {
	Start *struct {
		Process *processSelector `json:"process"`
	} `json:"start,omitempty"`
	Data *struct {
		Input *processInput `json:"input"`
	} `json:"data,omitempty"`
	Keepalive *struct{} `json:"keepalive,omitempty"`
}

// rpcStreamInput is a client stream: enveloped requests in, one empty
// response message plus the end frame out.
func (a *agent) rpcStreamInput(w http.ResponseWriter, r *http.Request) {
	err := func() error {
		var p *process
		for {
			flags, msg, err := readEnvelope(r.Body)
			if errors.Is(err, io.EOF) {
				return nil
			}
			if err != nil {
				return err
			}
			if flags&flagEndStream != 0 {
				return nil
			}
			var req streamInputRequest
			if err := json.Unmarshal(msg, &req); err != nil {
				return errf("invalid_argument", "decode request: %v", err)
			}
			switch {
			case req.Start != nil:
				if p, err = a.procs.find(req.Start.Process); err != nil {
					return err
				}
			case req.Data != nil:
				if p == nil {
					return errf("failed_precondition", "data before start")
				}
				if err := a.writeInput(p, req.Data.Input); err != nil {
					return err
				}
			}
		}
	}()
	sw := newStreamWriter(w)
	if err == nil {
		_ = sw.Send(struct{}{})
	}
	sw.End(err)
}
