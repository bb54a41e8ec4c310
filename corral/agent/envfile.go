package main

// /init's env vars, published to a file for processes that started before the
// /init: a template's start command restored from a memory snapshot or held
// warm in a pool (the code interpreter's kernels apply them before each cell).

import (
	"encoding/json"
	"os"
	"path/filepath"
)

// In a directory only root can write (no user can plant a link where the
// agent, as root, writes); the file itself belongs to the default user, 0600.
const defaultEnvFile = "/run/corral-init/envs.json"

func (a *agent) publishEnv() error {
	if a.envFile == "" {
		return nil
	}
	a.mu.RLock()
	body, err := json.Marshal(a.envVars)
	a.mu.RUnlock()
	if err != nil {
		return err
	}
	u, err := a.resolveUser("")
	if err != nil {
		return err
	}
	dir := filepath.Dir(a.envFile)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, ".envs-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // after a successful rename there is nothing left to remove
	if _, err := tmp.Write(body); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return err
	}
	if os.Getuid() == 0 {
		if err := tmp.Chown(int(u.UID), int(u.GID)); err != nil {
			tmp.Close()
			return err
		}
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), a.envFile)
}
