package main

import (
	"bytes"
	"errors"
	"io"
	"testing"
	"testing/iotest"
)

type countingWriter struct {
	bytes.Buffer
	writes int
}

func (c *countingWriter) Write(p []byte) (int, error) {
	c.writes++
	return c.Buffer.Write(p)
}

func TestCopyLargeWritesWholeBlocksFromSmallReads(t *testing.T) {
	data := bytes.Repeat([]byte("0123456789abcdef"), (1<<20)/16+7) // 1 MiB + 112 bytes
	var dst countingWriter
	n, err := copyLarge(&dst, iotest.HalfReader(bufferedBody(bytes.NewReader(data))))
	if err != nil || n != int64(len(data)) || !bytes.Equal(dst.Bytes(), data) {
		t.Fatalf("n=%d err=%v equal=%v", n, err, bytes.Equal(dst.Bytes(), data))
	}
	if want := len(data)/copyBlock + 1; dst.writes != want {
		t.Errorf("%d writes, want %d", dst.writes, want)
	}
}

func TestCopyLargeReportsReadErrors(t *testing.T) {
	boom := errors.New("boom")
	var dst bytes.Buffer
	n, err := copyLarge(&dst, io.MultiReader(bytes.NewReader([]byte("abc")), iotest.ErrReader(boom)))
	if !errors.Is(err, boom) || n != 3 || dst.String() != "abc" {
		t.Fatalf("n=%d err=%v", n, err)
	}
}
