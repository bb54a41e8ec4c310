package main

// User metadata on files, kept as `user.e2b.<key>` extended attributes
// (envd >= 0.6.2). Best effort: filesystems without xattrs just have none.

import (
	"net/http"
	"strings"
	"syscall"
)

const xattrPrefix = "user.e2b."

func readMetadata(path string) map[string]string {
	buf := make([]byte, 4096)
	n, err := syscall.Listxattr(path, buf)
	if err != nil || n <= 0 {
		return nil
	}
	var out map[string]string
	for _, name := range strings.Split(string(buf[:n]), "\x00") {
		if !strings.HasPrefix(name, xattrPrefix) {
			continue
		}
		val := make([]byte, 4096)
		m, err := syscall.Getxattr(path, name, val)
		if err != nil {
			continue
		}
		if out == nil {
			out = map[string]string{}
		}
		out[name[len(xattrPrefix):]] = string(val[:m])
	}
	return out
}

// metadataFromHeaders collects `X-Metadata-<key>: <value>` headers.
func metadataFromHeaders(h http.Header) (map[string]string, error) {
	out := map[string]string{}
	total := 0
	for name, vals := range h {
		if !strings.HasPrefix(strings.ToLower(name), "x-metadata-") || len(vals) == 0 {
			continue
		}
		key := strings.ToLower(name[len("x-metadata-"):])
		if key == "" || len(key) > 246 || !printable(key) || !printable(vals[0]) {
			return nil, errf("invalid_argument", "invalid metadata key or value %q", key)
		}
		total += len(xattrPrefix) + len(key) + len(vals[0])
		out[key] = vals[0]
	}
	if total > 4096 {
		return nil, errf("invalid_argument", "metadata too large (%d bytes, max 4096)", total)
	}
	return out, nil
}

func printable(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// replaceMetadata makes the file's metadata exactly md.
func replaceMetadata(path string, md map[string]string) {
	for k := range readMetadata(path) {
		if _, keep := md[k]; !keep {
			_ = syscall.Removexattr(path, xattrPrefix+k)
		}
	}
	for k, v := range md {
		_ = syscall.Setxattr(path, xattrPrefix+k, []byte(v), 0)
	}
}
