package main

import (
	"encoding/base64"
	"strings"
	"testing"
	"time"
)

var rootAuth = map[string]string{"Authorization": "Basic " + base64.StdEncoding.EncodeToString([]byte("root:"))}

func decodeOutput(t *testing.T, frames []frame) (stdout, stderr string, end map[string]interface{}) {
	t.Helper()
	for i, f := range frames {
		if f.flags == flagEndStream {
			if e, ok := f.body["error"]; ok {
				t.Fatalf("stream error %v", e)
			}
			continue
		}
		ev := f.body["event"].(map[string]interface{})
		if i == 0 {
			if _, ok := ev["start"]; !ok {
				t.Fatalf("first event %v is not start", ev)
			}
		}
		if d, ok := ev["data"].(map[string]interface{}); ok {
			for k, v := range d {
				b, _ := base64.StdEncoding.DecodeString(v.(string))
				if k == "stdout" {
					stdout += string(b)
				} else {
					stderr += string(b)
				}
			}
		}
		if e, ok := ev["end"].(map[string]interface{}); ok {
			end = e
		}
	}
	return
}

func TestStartStreamsOutputAndExit(t *testing.T) {
	_, srv := testAgent(t)
	resp := postStream(t, srv.URL+"/process.Process/Start", map[string]interface{}{
		"process": map[string]interface{}{"cmd": "/bin/sh", "args": []string{"-c", "echo out; echo err >&2; exit 3"}, "envs": map[string]string{"X": "1"}},
	}, rootAuth)
	defer resp.Body.Close()
	out, errOut, end := decodeOutput(t, readFrames(t, resp.Body))
	if out != "out\n" || errOut != "err\n" {
		t.Fatalf("stdout %q stderr %q", out, errOut)
	}
	if end["exitCode"].(float64) != 3 || end["exited"] != true || end["status"] != "exit status 3" {
		t.Fatalf("end %v", end)
	}
}

func TestStartKilledBySignal(t *testing.T) {
	_, srv := testAgent(t)
	resp := postStream(t, srv.URL+"/process.Process/Start", map[string]interface{}{
		"process": map[string]interface{}{"cmd": "/bin/sh", "args": []string{"-c", "kill -9 $$"}},
	}, rootAuth)
	defer resp.Body.Close()
	_, _, end := decodeOutput(t, readFrames(t, resp.Body))
	if end["exitCode"].(float64) != -1 || end["exited"] == true || end["status"] != "signal: killed" {
		t.Fatalf("end %v", end)
	}
}

func TestStartBadCwdIsInvalidArgument(t *testing.T) {
	_, srv := testAgent(t)
	resp := postStream(t, srv.URL+"/process.Process/Start", map[string]interface{}{
		"process": map[string]interface{}{"cmd": "/bin/true", "cwd": "/no/such/dir"},
	}, rootAuth)
	defer resp.Body.Close()
	frames := readFrames(t, resp.Body)
	last := frames[len(frames)-1]
	if last.flags != flagEndStream || last.body["error"].(map[string]interface{})["code"] != "invalid_argument" {
		t.Fatalf("frames %+v", frames)
	}
}

func TestKeepaliveAndTimeoutKill(t *testing.T) {
	_, srv := testAgent(t)
	hdr := map[string]string{"Keepalive-Ping-Interval": "0.1", "Connect-Timeout-Ms": "500"}
	for k, v := range rootAuth {
		hdr[k] = v
	}
	t0 := time.Now()
	resp := postStream(t, srv.URL+"/process.Process/Start", map[string]interface{}{
		"process": map[string]interface{}{"cmd": "/bin/sleep", "args": []string{"10"}},
	}, hdr)
	defer resp.Body.Close()
	frames := readFrames(t, resp.Body)
	if d := time.Since(t0); d > 3*time.Second {
		t.Fatalf("timeout did not kill the process (took %v)", d)
	}
	keepalives := 0
	for _, f := range frames {
		if ev, ok := f.body["event"].(map[string]interface{}); ok {
			if _, ok := ev["keepalive"]; ok {
				keepalives++
			}
		}
	}
	if keepalives < 2 {
		t.Fatalf("want keepalives, got frames %+v", frames)
	}
	_, _, end := decodeOutput(t, frames)
	if end["status"] != "signal: killed" {
		t.Fatalf("end %v", end)
	}
}

func TestListSignalAndNotFound(t *testing.T) {
	a, srv := testAgent(t)
	tag := "bg"
	p, sub, err := a.spawn(&startRequest{Process: &processConfig{Cmd: "/bin/sleep", Args: []string{"30"}}, Tag: &tag}, &userInfo{Name: "root", Home: "/"}, 0)
	if err != nil {
		t.Fatal(err)
	}
	p.unsubscribe(sub)
	var list listResponse
	postJSON(t, srv.URL+"/process.Process/List", map[string]interface{}{}, &list)
	if len(list.Processes) != 1 || *list.Processes[0].Tag != "bg" || list.Processes[0].Config.Cmd != "/bin/sleep" {
		t.Fatalf("list %+v", list)
	}
	if st := postJSON(t, srv.URL+"/process.Process/SendSignal", map[string]interface{}{
		"process": map[string]interface{}{"tag": "bg"}, "signal": "SIGNAL_SIGKILL"}, nil); st != 200 {
		t.Fatalf("signal status %d", st)
	}
	select {
	case <-p.done:
	case <-time.After(3 * time.Second):
		t.Fatal("process not reaped after SIGKILL")
	}
	var e rpcError
	if st := postJSON(t, srv.URL+"/process.Process/SendSignal", map[string]interface{}{
		"process": map[string]interface{}{"pid": p.pid}, "signal": "SIGNAL_SIGKILL"}, &e); st != 404 || e.Code != "not_found" {
		t.Fatalf("status %d err %+v", st, e)
	}
}

func TestPtyEchoAndResize(t *testing.T) {
	a, _ := testAgent(t)
	p, sub, err := a.spawn(&startRequest{
		Process: &processConfig{Cmd: "/bin/sh", Args: []string{"-c", "stty size; read x; echo got$x"}},
		Pty:     &ptyConfig{Size: &ptySize{Cols: 77, Rows: 22}},
	}, &userInfo{Name: "root", Home: "/"}, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer p.unsubscribe(sub)
	if err := a.writeInput(p, &processInput{Pty: []byte("zz\n")}); err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	for ev := range sub.ch {
		if ev.Data != nil {
			out.Write(ev.Data.Pty)
		}
		if ev.End != nil {
			break
		}
	}
	if !strings.Contains(out.String(), "22 77") || !strings.Contains(out.String(), "gotzz") {
		t.Fatalf("pty output %q", out.String())
	}
}

func TestOrphansAreReaped(t *testing.T) {
	a, _ := testAgent(t)
	// The grandchild outlives its parent and is re-parented to us (subreaper).
	p, sub, err := a.spawn(&startRequest{Process: &processConfig{Cmd: "/bin/sh", Args: []string{"-c", "(sleep 0.2 &) ; exit 0"}}},
		&userInfo{Name: "root", Home: "/"}, 0)
	if err != nil {
		t.Fatal(err)
	}
	for ev := range sub.ch {
		if ev.End != nil {
			break
		}
	}
	p.unsubscribe(sub)
	time.Sleep(600 * time.Millisecond)
	if zs := zombieChildren(t); len(zs) > 0 {
		t.Fatalf("zombies left: %v", zs)
	}
}

func TestOutputBufferCap(t *testing.T) {
	defer setOutputBuffer(defaultOutputBuffer)
	setOutputBuffer(100)
	if subscriberQueue != 1 {
		t.Fatalf("a cap below one chunk must still queue one chunk, got %d", subscriberQueue)
	}
	setOutputBuffer(256 << 10)
	if subscriberQueue != 8 {
		t.Fatalf("256 KiB = 8 chunks of 32 KiB, got %d", subscriberQueue)
	}
	p := &process{subs: map[*subscriber]struct{}{}}
	s, ok := p.subscribe()
	if !ok || cap(s.ch) != 8 {
		t.Fatalf("subscriber queue should hold 8 chunks, got %d", cap(s.ch))
	}
}
