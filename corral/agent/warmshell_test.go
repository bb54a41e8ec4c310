package main

import (
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestWarmCommandTakesOnlyPlainLoginShellCommands(t *testing.T) {
	yes := true
	plain := &startRequest{Process: &processConfig{Cmd: "/bin/bash", Args: []string{"-l", "-c", "echo hi"},
		Envs: map[string]string{"A_1": "x"}}}
	if cmd, ok := warmCommand(plain); !ok || cmd != "echo hi" {
		t.Fatalf("plain bash -l -c: %q %v", cmd, ok)
	}
	for name, req := range map[string]*startRequest{
		"pty":      {Process: plain.Process, Pty: &ptyConfig{}},
		"stdin":    {Process: plain.Process, Stdin: &yes},
		"not bash": {Process: &processConfig{Cmd: "/bin/sh", Args: []string{"-l", "-c", "x"}}},
		"no -l":    {Process: &processConfig{Cmd: "/bin/bash", Args: []string{"-c", "x"}}},
		"bad env":  {Process: &processConfig{Cmd: "/bin/bash", Args: []string{"-l", "-c", "x"}, Envs: map[string]string{"A-B": "1"}}},
		"digit":    {Process: &processConfig{Cmd: "/bin/bash", Args: []string{"-l", "-c", "x"}, Envs: map[string]string{"1A": "1"}}},
	} {
		if _, ok := warmCommand(req); ok {
			t.Errorf("%s: taken by the warm shell", name)
		}
	}
}

func TestWarmScriptQuotesEverything(t *testing.T) {
	script := string(warmScript("/tmp/it's", map[string]string{"V": "a'b $(x)"}, "echo 'q' \"$V\""))
	want := "exec 3<&-\ncd -- '/tmp/it'\\''s' || exit 1\nexport V='a'\\''b $(x)'\neval 'echo '\\''q'\\'' \"$V\"'\n"
	if script != want {
		t.Fatalf("script\n%s\nwant\n%s", script, want)
	}
}

// The warm shell runs the command with the request's cwd and env, reports its
// exit code, and a new one is ready for the next command.
func TestWarmShellRunsCommandsLikeBashLC(t *testing.T) {
	a, first := agentWithWarmShell(t)
	root := &userInfo{Name: "root", Home: "/"}
	run := func(cmd string, envs map[string]string, cwd string) (int, string, string, int32) {
		req := &startRequest{Process: &processConfig{Cmd: "/bin/bash", Args: []string{"-l", "-c", cmd}, Envs: envs, Cwd: &cwd}}
		p, sub, err := a.spawn(req, root, 0)
		if err != nil {
			t.Fatal(err)
		}
		var out, errOut strings.Builder
		for {
			select {
			case ev := <-sub.ch:
				if ev.Data != nil {
					out.Write(ev.Data.Stdout)
					errOut.Write(ev.Data.Stderr)
				}
				if ev.End != nil {
					return p.pid, out.String(), errOut.String(), ev.End.ExitCode
				}
			case <-time.After(10 * time.Second):
				t.Fatal("no end event")
			}
		}
	}
	pid, out, _, code := run(`echo "$V"; pwd; exit 3`, map[string]string{"V": "it's"}, "/tmp")
	if pid != first.pid || out != "it's\n/tmp\n" || code != 3 {
		t.Fatalf("warm run: pid %d (warm %d) out %q code %d", pid, first.pid, out, code)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		a.warm.mu.Lock()
		next := a.warm.shell
		a.warm.mu.Unlock()
		if next != nil && next.pid != first.pid {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no new warm shell after the claim")
		}
		time.Sleep(10 * time.Millisecond)
	}
	_, _, stderr, code := run("if then", nil, "/")
	if code != 2 || !strings.Contains(stderr, "syntax error") {
		t.Fatalf("syntax error: code %d stderr %q", code, stderr)
	}
	a.invalidateWarm() // /init: the old shell goes, a new one comes
}

// /init replaces the warm shell only when it changes the env vars the shell
// inherited: a pooled sandbox's /init with nothing new keeps it.
func TestInitKeepsTheWarmShellUnlessEnvVarsChange(t *testing.T) {
	if _, err := exec.LookPath("bash"); err != nil {
		t.Skip("no bash")
	}
	a, srv := testAgent(t)
	a.warm.enabled = true
	a.refillWarm()
	shellPid := func() int {
		a.warm.mu.Lock()
		defer a.warm.mu.Unlock()
		if a.warm.shell == nil {
			return 0
		}
		return a.warm.shell.pid
	}
	first := shellPid()
	if first == 0 {
		t.Fatal("no warm shell after refill")
	}
	postInit := func(body string) {
		resp, err := http.Post(srv.URL+"/init", "application/json", strings.NewReader(body))
		if err != nil || resp.StatusCode != 204 {
			t.Fatalf("init %s: %v %v", body, err, resp)
		}
		resp.Body.Close()
	}
	postInit(`{"envVars": {}, "defaultWorkdir": "/tmp"}`)
	if got := shellPid(); got != first {
		t.Fatalf("warm shell replaced by an /init that changed no env var: %d -> %d", first, got)
	}
	postInit(`{"envVars": {"NEW_VAR": "1"}}`)
	deadline := time.Now().Add(5 * time.Second)
	for got := shellPid(); got == first || got == 0; got = shellPid() {
		if time.Now().After(deadline) {
			t.Fatalf("warm shell not replaced after an env var change (pid %d)", got)
		}
		time.Sleep(10 * time.Millisecond)
	}
	postInit(`{"envVars": {"NEW_VAR": "1"}}`)
	if second := shellPid(); second == first {
		t.Fatal("unreachable: checked above")
	} else {
		time.Sleep(50 * time.Millisecond)
		if got := shellPid(); got != second {
			t.Fatalf("the same env var again replaced the shell: %d -> %d", second, got)
		}
	}
}

func TestInitPublishesEnvVarsForTheDefaultUser(t *testing.T) {
	a, srv := testAgent(t)
	a.envFile = filepath.Join(t.TempDir(), "init", "envs.json")
	resp, err := http.Post(srv.URL+"/init", "application/json",
		strings.NewReader(`{"envVars": {"GREETING": "hi there", "EMPTY": ""}, "defaultUser": "root"}`))
	if err != nil || resp.StatusCode != 204 {
		t.Fatalf("init: %v %v", err, resp)
	}
	resp.Body.Close()
	raw, err := os.ReadFile(a.envFile)
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]string
	if err := json.Unmarshal(raw, &got); err != nil || got["GREETING"] != "hi there" || got["EMPTY"] != "" || len(got) != 2 {
		t.Fatalf("published %s (%v)", raw, err)
	}
	st, _ := os.Stat(a.envFile)
	if st.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", st.Mode().Perm())
	}
	if dst, _ := os.Stat(filepath.Dir(a.envFile)); dst.Mode().Perm() != 0o755 {
		t.Errorf("dir mode %v, want 0755", dst.Mode().Perm())
	}
	if leftovers, _ := filepath.Glob(filepath.Join(filepath.Dir(a.envFile), ".envs-*")); len(leftovers) != 0 {
		t.Errorf("temp files left: %v", leftovers)
	}
}

// A command that keeps running (a server started in the background) does not
// hold back the next warm shell for long.
func TestNextWarmShellDuringALongCommand(t *testing.T) {
	a, first := agentWithWarmShell(t)
	cwd := "/"
	req := &startRequest{Process: &processConfig{Cmd: "/bin/bash", Args: []string{"-l", "-c", "sleep 30"}, Cwd: &cwd}}
	p, _, err := a.spawn(req, &userInfo{Name: "root", Home: "/"}, 0)
	if err != nil || p.pid != first.pid {
		t.Fatalf("spawn: %v (pid %d, warm %d)", err, p.pid, first.pid)
	}
	defer func() { _ = p.signal(syscall.SIGKILL) }()
	deadline := time.Now().Add(5 * time.Second)
	for {
		a.warm.mu.Lock()
		next := a.warm.shell
		a.warm.mu.Unlock()
		if next != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no warm shell while a long command runs")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// agentWithWarmShell is an agent (warm shell on) whose first warm shell is up.
func agentWithWarmShell(t *testing.T) (*agent, *warmShell) {
	t.Helper()
	if _, err := exec.LookPath("bash"); err != nil {
		t.Skip("no bash")
	}
	a := newAgent()
	a.warm.enabled = true
	a.refillWarm()
	a.warm.mu.Lock()
	first := a.warm.shell
	a.warm.mu.Unlock()
	if first == nil {
		t.Fatal("no warm shell after refill")
	}
	return a, first
}
