package gateway

import (
	"bufio"
	"bytes"
	"errors"
	"io"
)

// sseReader splits a server-sent-events stream into events, keeping each
// event's exact bytes (what the caller is sent) and its parsed name and
// data. One event is held at a time: the stream is never buffered whole.
type sseReader struct {
	br *bufio.Reader
	// ev holds the current event's raw bytes, data its joined data lines.
	ev   []byte
	data []byte
}

func newSSEReader(r io.Reader, size int) *sseReader {
	return &sseReader{br: bufio.NewReaderSize(r, size), ev: make([]byte, 0, 1024), data: make([]byte, 0, 1024)}
}

func (s *sseReader) reset(r io.Reader) {
	s.br.Reset(r)
	s.ev, s.data = s.ev[:0], s.data[:0]
}

// next reads one event: raw is every byte of it up to and including the
// blank line that ends it; name is its event field, data its data lines
// joined with '\n'. The slices are valid until the next call. At the end of
// the stream a final event without its blank line is returned with io.EOF;
// err is io.EOF with empty raw when nothing is left.
func (s *sseReader) next() (raw, name, data []byte, err error) {
	s.ev, s.data = s.ev[:0], s.data[:0]
	nameStart, nameEnd := -1, -1
	dataLines := 0
	for {
		start := len(s.ev)
		line, rerr := s.br.ReadSlice('\n')
		s.ev = append(s.ev, line...)
		for errors.Is(rerr, bufio.ErrBufferFull) {
			// A line longer than the buffer (a large chunk): keep reading it.
			line, rerr = s.br.ReadSlice('\n')
			s.ev = append(s.ev, line...)
		}
		line = s.ev[start:]
		content := bytes.TrimRight(line, "\r\n")
		if rerr != nil && rerr != io.EOF {
			return s.ev, nil, nil, rerr
		}
		if len(content) == 0 && len(line) > 0 {
			// A blank line ends the event.
			return s.ev, s.name(nameStart, nameEnd), s.data, nil
		}
		if len(content) > 0 && content[0] != ':' {
			field, value := content, []byte(nil)
			if i := bytes.IndexByte(content, ':'); i >= 0 {
				field, value = content[:i], content[i+1:]
				if len(value) > 0 && value[0] == ' ' {
					value = value[1:]
				}
			}
			switch string(field) {
			case "data":
				if dataLines > 0 {
					s.data = append(s.data, '\n')
				}
				s.data = append(s.data, value...)
				dataLines++
			case "event":
				// Offsets, not a slice: s.ev may move as it grows. content
				// starts at s.ev[start] and value is its tail.
				nameStart = start + len(content) - len(value)
				nameEnd = nameStart + len(value)
			}
		}
		if rerr == io.EOF {
			if len(s.ev) == 0 {
				return nil, nil, nil, io.EOF
			}
			return s.ev, s.name(nameStart, nameEnd), s.data, io.EOF
		}
	}
}

func (s *sseReader) name(start, end int) []byte {
	if start < 0 {
		return nil
	}
	return s.ev[start:end]
}
