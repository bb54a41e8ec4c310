package main

// /init, /envs and /metrics.

import (
	"bufio"
	"encoding/json"
	"io"
	"log"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

type initRequest struct {
	EnvVars        map[string]string `json:"envVars"`
	AccessToken    *string           `json:"accessToken"`
	DefaultUser    *string           `json:"defaultUser"`
	DefaultWorkdir *string           `json:"defaultWorkdir"`
	Timestamp      *string           `json:"timestamp"`
}

func (a *agent) handleInit(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		writeFileError(w, http.StatusMethodNotAllowed, "method not allowed")
		return
	}
	var req initRequest
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err == nil && len(body) > 0 {
		err = json.Unmarshal(body, &req)
	}
	if err != nil {
		writeFileError(w, http.StatusBadRequest, "bad /init body: "+err.Error())
		return
	}
	if req.DefaultUser != nil && *req.DefaultUser != "" {
		if _, err := lookupUser(*req.DefaultUser); err != nil {
			writeFileError(w, http.StatusBadRequest, err.Error())
			return
		}
	}
	a.mu.Lock()
	envChanged := false
	for k, v := range req.EnvVars {
		if old, ok := a.envVars[k]; !ok || old != v {
			envChanged = true
		}
		a.envVars[k] = v
	}
	if req.AccessToken != nil {
		a.accessToken = *req.AccessToken
	}
	if req.DefaultUser != nil {
		a.defaultUser = *req.DefaultUser
	}
	if req.DefaultWorkdir != nil {
		a.defaultWorkdir = *req.DefaultWorkdir
	}
	a.mu.Unlock()
	if err := a.publishEnv(); err != nil {
		log.Printf("corral-agent: publishing env vars to %s: %v", a.envFile, err)
	}
	if envChanged {
		// The warm shell inherited the old env vars. A new default user needs
		// nothing here: a claim checks the shell's user, and the next refill
		// resolves the new one. Unchanged, the shell stays: a pooled sandbox's
		// /init then costs its first command nothing.
		a.invalidateWarm()
	}
	// The timestamp is not applied: in gVisor/runc the sandbox clock is the
	// host's clock already, and setting it would change the host's.
	w.WriteHeader(http.StatusNoContent)
}

func (a *agent) handleEnvs(w http.ResponseWriter, r *http.Request) {
	a.mu.RLock()
	out, _ := json.Marshal(a.envVars)
	a.mu.RUnlock()
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(out)
}

type metrics struct {
	Ts          int64   `json:"ts"`
	CPUCount    int     `json:"cpu_count"`
	CPUUsedPct  float64 `json:"cpu_used_pct"`
	MemTotal    uint64  `json:"mem_total"`
	MemUsed     uint64  `json:"mem_used"`
	MemCache    uint64  `json:"mem_cache"`
	MemTotalMiB uint64  `json:"mem_total_mib"`
	MemUsedMiB  uint64  `json:"mem_used_mib"`
	DiskUsed    uint64  `json:"disk_used"`
	DiskTotal   uint64  `json:"disk_total"`
}

// cpuSampler computes CPU use between two /metrics calls (no sleeping).
type cpuSampler struct {
	mu          sync.Mutex
	busy, total uint64
}

func readCPU() (busy, total uint64, ok bool) {
	f, err := os.Open("/proc/stat")
	if err != nil {
		return 0, 0, false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	if !sc.Scan() {
		return 0, 0, false
	}
	fields := strings.Fields(sc.Text())
	if len(fields) < 5 || fields[0] != "cpu" {
		return 0, 0, false
	}
	for i, s := range fields[1:] {
		v, _ := strconv.ParseUint(s, 10, 64)
		total += v
		if i != 3 && i != 4 { // idle, iowait
			busy += v
		}
	}
	return busy, total, true
}

func (c *cpuSampler) pct() float64 {
	busy, total, ok := readCPU()
	if !ok {
		return 0
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	db, dt := busy-c.busy, total-c.total
	c.busy, c.total = busy, total
	if dt == 0 || busy < db {
		return 0
	}
	return float64(db) * 100 / float64(dt)
}

func readMeminfo() map[string]uint64 {
	out := map[string]uint64{}
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return out
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) >= 2 {
			v, _ := strconv.ParseUint(fields[1], 10, 64)
			out[strings.TrimSuffix(fields[0], ":")] = v * 1024
		}
	}
	return out
}

func (a *agent) handleMetrics(w http.ResponseWriter, r *http.Request) {
	m := metrics{Ts: time.Now().Unix(), CPUCount: runtime.NumCPU(), CPUUsedPct: a.cpu.pct()}
	mi := readMeminfo()
	m.MemTotal = mi["MemTotal"]
	avail, ok := mi["MemAvailable"]
	if !ok {
		avail = mi["MemFree"] + mi["Cached"] + mi["Buffers"]
	}
	if m.MemTotal > avail {
		m.MemUsed = m.MemTotal - avail
	}
	m.MemCache = mi["Cached"]
	m.MemTotalMiB, m.MemUsedMiB = m.MemTotal>>20, m.MemUsed>>20
	var st syscall.Statfs_t
	if syscall.Statfs("/", &st) == nil {
		m.DiskTotal = st.Blocks * uint64(st.Bsize)
		m.DiskUsed = (st.Blocks - st.Bfree) * uint64(st.Bsize)
	}
	out, _ := json.Marshal(m)
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(out)
}
