package main

// Large-block copies for file transfers: in gVisor every read and write is a
// trap into the Sentry (on ptrace, tens of µs each), so moving 1 MiB in the
// 4 KiB pieces that net/http and mime/multipart hand out costs milliseconds.

import (
	"bufio"
	"errors"
	"io"
)

const copyBlock = 256 << 10

// bufferedBody reads a request body in large socket reads, so a parser on
// top of it (multipart, 4 KiB at a time) is served from memory.
func bufferedBody(r io.Reader) io.Reader {
	return bufio.NewReaderSize(r, copyBlock)
}

// copyLarge copies src to dst in blocks of up to copyBlock bytes, filling
// each block before writing it. Unlike io.Copy it never hands the copy to
// dst.ReadFrom or src.WriteTo, which would fall back to 32 KiB or smaller.
func copyLarge(dst io.Writer, src io.Reader) (int64, error) {
	buf := make([]byte, copyBlock)
	var total int64
	for {
		n, rerr := io.ReadFull(src, buf)
		if n > 0 {
			w, werr := dst.Write(buf[:n])
			total += int64(w)
			if werr != nil {
				return total, werr
			}
		}
		if errors.Is(rerr, io.EOF) || errors.Is(rerr, io.ErrUnexpectedEOF) {
			return total, nil
		}
		if rerr != nil {
			return total, rerr
		}
	}
}
