package main

// Path resolution, ownership and EntryInfo shared by /files and the
// filesystem service.

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// expandPath makes p absolute: "~" and relative paths are under the user's home.
func expandPath(p string, u *userInfo) string {
	switch {
	case p == "~":
		p = u.Home
	case strings.HasPrefix(p, "~/"):
		p = filepath.Join(u.Home, p[2:])
	case !filepath.IsAbs(p):
		p = filepath.Join(u.Home, p)
	}
	return filepath.Clean(p)
}

// fsError maps an os error to a Connect error.
func fsError(err error, path string) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, fs.ErrNotExist):
		return errf("not_found", "path %q does not exist", path)
	case errors.Is(err, fs.ErrPermission):
		return errf("permission_denied", "permission denied: %q", path)
	case errors.Is(err, fs.ErrExist):
		return errf("already_exists", "path %q already exists", path)
	case errors.Is(err, syscall.ENOTDIR):
		return errf("invalid_argument", "a component of %q is not a directory", path)
	case errors.Is(err, syscall.ENOSPC), errors.Is(err, syscall.EDQUOT):
		return errf("resource_exhausted", "not enough disk space for %q", path)
	}
	return errf("internal", "%v", err)
}

// chownTo gives path to u (the agent runs as root; files created for a user
// must belong to that user). Only done when we are root.
func chownTo(path string, u *userInfo) {
	if os.Getuid() != 0 {
		return
	}
	// Skipping a no-op chown spares watchers a spurious CHMOD event.
	if st, err := os.Lstat(path); err == nil {
		if s, ok := st.Sys().(*syscall.Stat_t); ok && s.Uid == u.UID && s.Gid == u.GID {
			return
		}
	}
	_ = os.Lchown(path, int(u.UID), int(u.GID))
}

// mkdirAllAs is MkdirAll that chowns every directory it creates to u.
func mkdirAllAs(dir string, u *userInfo) error {
	st, err := os.Stat(dir)
	if err == nil {
		if !st.IsDir() {
			return &os.PathError{Op: "mkdir", Path: dir, Err: syscall.ENOTDIR}
		}
		return nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if parent := filepath.Dir(dir); parent != dir {
		if err := mkdirAllAs(parent, u); err != nil {
			return err
		}
	}
	if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	chownTo(dir, u)
	return nil
}

type timestamp time.Time

func (t timestamp) MarshalJSON() ([]byte, error) {
	return []byte(`"` + time.Time(t).UTC().Format(time.RFC3339Nano) + `"`), nil
}

type entryInfo struct {
	Name          string            `json:"name"`
	Type          string            `json:"type"`
	Path          string            `json:"path"`
	Size          int64             `json:"size"`
	Mode          uint32            `json:"mode"`
	Permissions   string            `json:"permissions"`
	Owner         string            `json:"owner"`
	Group         string            `json:"group"`
	ModifiedTime  timestamp         `json:"modifiedTime"`
	SymlinkTarget *string           `json:"symlinkTarget,omitempty"`
	Metadata      map[string]string `json:"metadata,omitempty"`
	IsSymlink     bool              `json:"isSymlink,omitempty"`
}

func fileType(m fs.FileMode) string {
	switch {
	case m.IsDir():
		return "FILE_TYPE_DIRECTORY"
	case m&fs.ModeSymlink != 0:
		return "FILE_TYPE_SYMLINK"
	}
	return "FILE_TYPE_FILE"
}

// statEntry describes path. A symlink reports its target's type (and size)
// with isSymlink set, like current envd; a dangling one reports SYMLINK.
func statEntry(path string) (*entryInfo, error) {
	lst, err := os.Lstat(path)
	if err != nil {
		return nil, err
	}
	return entryFromInfo(path, lst), nil
}

func entryFromInfo(path string, lst fs.FileInfo) *entryInfo {
	info := lst
	e := &entryInfo{Name: filepath.Base(path), Path: path}
	if lst.Mode()&fs.ModeSymlink != 0 {
		e.IsSymlink = true
		if target, err := os.Readlink(path); err == nil {
			e.SymlinkTarget = &target
		}
		if st, err := os.Stat(path); err == nil {
			info = st
		}
	}
	e.Type = fileType(info.Mode())
	e.Size = info.Size()
	e.Mode = uint32(info.Mode().Perm())
	e.Permissions = lsPermissions(info.Mode())
	e.ModifiedTime = timestamp(info.ModTime())
	if st, ok := lst.Sys().(*syscall.Stat_t); ok {
		e.Owner = nameOfUID(st.Uid)
		e.Group = nameOfGID(st.Gid)
	}
	e.Metadata = readMetadata(path)
	return e
}

// lsPermissions renders mode the way `ls -l` does (e.g. drwxrwxrwt).
func lsPermissions(m fs.FileMode) string {
	b := []byte("----------")
	switch {
	case m.IsDir():
		b[0] = 'd'
	case m&fs.ModeSymlink != 0:
		b[0] = 'l'
	case m&fs.ModeNamedPipe != 0:
		b[0] = 'p'
	case m&fs.ModeSocket != 0:
		b[0] = 's'
	case m&fs.ModeCharDevice != 0:
		b[0] = 'c'
	case m&fs.ModeDevice != 0:
		b[0] = 'b'
	}
	const rwx = "rwxrwxrwx"
	for i := 0; i < 9; i++ {
		if m&(1<<uint(8-i)) != 0 {
			b[1+i] = rwx[i]
		}
	}
	special := func(pos int, set bool, lower, upper byte) {
		if set {
			if b[pos] != '-' {
				b[pos] = lower
			} else {
				b[pos] = upper
			}
		}
	}
	special(3, m&fs.ModeSetuid != 0, 's', 'S')
	special(6, m&fs.ModeSetgid != 0, 's', 'S')
	special(9, m&fs.ModeSticky != 0, 't', 'T')
	return string(b)
}
