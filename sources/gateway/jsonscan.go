package gateway

import (
	"bytes"
	"encoding/json"
	"errors"
	"strconv"
)

// A minimal JSON object walker. The gateway reads a handful of top-level
// fields of request and response bodies (model, stream, usage, id) and must
// not pay for decoding prompts and completions: this walks an object's
// members and hands back the raw bytes of each value, skipping everything
// else without allocating. It checks structure only as far as it walks
// (brackets, strings, escapes); the upstream validates requests, and every
// usage event built from a value here is checked by the schemas decoder
// before it is published.

var errSyntax = errors.New("malformed JSON")

// maxDepth bounds nesting while skipping a value.
const maxDepth = 512

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

func skipSpace(b []byte, i int) int {
	for i < len(b) && isSpace(b[i]) {
		i++
	}
	return i
}

// skipString returns the index after the string starting at b[i] (a '"')
// and whether it holds escapes. It jumps from quote to quote with
// bytes.IndexByte (prompts are long strings: this is the scanner's hot
// loop); a quote preceded by an odd run of backslashes is escaped. Control
// characters inside are not checked: the upstream validates the request,
// and the decoder validates every event.
func skipString(b []byte, i int) (int, bool, error) {
	esc := false
	for i++; i <= len(b); {
		j := bytes.IndexByte(b[i:], '"')
		if j < 0 {
			return 0, false, errSyntax
		}
		q := i + j
		if !esc && bytes.IndexByte(b[i:q], '\\') >= 0 {
			esc = true
		}
		n := 0
		for p := q - 1; p >= i && b[p] == '\\'; p-- {
			n++
		}
		if n%2 == 0 {
			return q + 1, esc, nil
		}
		i = q + 1
	}
	return 0, false, errSyntax
}

// skipValue returns the index after the value starting at b[i].
func skipValue(b []byte, i int) (int, error) {
	if i >= len(b) {
		return 0, errSyntax
	}
	switch c := b[i]; {
	case c == '"':
		end, _, err := skipString(b, i)
		return end, err
	case c == '{' || c == '[':
		depth := 0
		for ; i < len(b); i++ {
			switch b[i] {
			case '"':
				end, _, err := skipString(b, i)
				if err != nil {
					return 0, err
				}
				i = end - 1
			case '{', '[':
				if depth++; depth > maxDepth {
					return 0, errSyntax
				}
			case '}', ']':
				if depth--; depth == 0 {
					return i + 1, nil
				}
			}
		}
		return 0, errSyntax
	default:
		// Number or literal: up to the next delimiter.
		start := i
		for i < len(b) && !isSpace(b[i]) && b[i] != ',' && b[i] != '}' && b[i] != ']' {
			i++
		}
		if i == start {
			return 0, errSyntax
		}
		return i, nil
	}
}

// member is one member of an object: its key (raw, without quotes) and the
// byte range of its value within the object's buffer. Passed by value: a
// pointer would escape through the callback and allocate per object.
type member struct {
	key      []byte
	keyEsc   bool
	valStart int
	valEnd   int
}

// eachMember calls fn for every member of the object b[i:] in order, and
// returns the index of the object's closing '}'. fn returns false to stop.
func eachMember(b []byte, i int, fn func(m member) bool) (int, error) {
	i = skipSpace(b, i)
	if i >= len(b) || b[i] != '{' {
		return 0, errSyntax
	}
	i = skipSpace(b, i+1)
	if i < len(b) && b[i] == '}' {
		return i, nil
	}
	var m member
	for {
		if i >= len(b) || b[i] != '"' {
			return 0, errSyntax
		}
		end, esc, err := skipString(b, i)
		if err != nil {
			return 0, err
		}
		m.key, m.keyEsc = b[i+1:end-1], esc
		i = skipSpace(b, end)
		if i >= len(b) || b[i] != ':' {
			return 0, errSyntax
		}
		i = skipSpace(b, i+1)
		if m.valEnd, err = skipValue(b, i); err != nil {
			return 0, err
		}
		m.valStart = i
		if !fn(m) {
			return i, nil
		}
		i = skipSpace(b, m.valEnd)
		if i >= len(b) {
			return 0, errSyntax
		}
		switch b[i] {
		case ',':
			i = skipSpace(b, i+1)
		case '}':
			return i, nil
		default:
			return 0, errSyntax
		}
	}
}

// keyIs compares a member's key with name, unescaping it first if needed
// ("mod\u0065l" is "model": a caller must not route by one key while the
// upstream reads another).
func (m *member) keyIs(name string) bool {
	if !m.keyEsc {
		return string(m.key) == name
	}
	var s string
	q := make([]byte, 0, len(m.key)+2)
	q = append(append(append(q, '"'), m.key...), '"')
	return json.Unmarshal(q, &s) == nil && s == name
}

// fields finds the values of the named top-level members of the object b.
// out[i] receives the raw value of names[i], or nil when absent. A name
// present twice is an error: a duplicate key means different things to
// different parsers.
func fields(b []byte, names []string, out [][]byte) error {
	var dup bool
	_, err := eachMember(b, 0, func(m member) bool {
		for i, n := range names {
			if m.keyIs(n) {
				if out[i] != nil {
					dup = true
					return false
				}
				out[i] = b[m.valStart:m.valEnd]
				break
			}
		}
		return true
	})
	if err != nil {
		return err
	}
	if dup {
		return errDuplicate
	}
	return nil
}

var errDuplicate = errors.New("duplicate key")

// jsonString decodes a raw JSON string value.
func jsonString(v []byte) (string, bool) {
	if len(v) < 2 || v[0] != '"' || v[len(v)-1] != '"' {
		return "", false
	}
	if bytes.IndexByte(v, '\\') < 0 {
		return string(v[1 : len(v)-1]), true
	}
	var s string
	if err := json.Unmarshal(v, &s); err != nil {
		return "", false
	}
	return s, true
}

func isNull(v []byte) bool { return string(v) == "null" }

func isObject(v []byte) bool { return len(v) > 0 && v[0] == '{' }

// isEmptyArray reports whether v is [] (with any whitespace inside).
func isEmptyArray(v []byte) bool {
	return len(v) >= 2 && v[0] == '[' && skipSpace(v, 1) == len(v)-1
}

// isNumber reports whether v looks like a JSON number.
func isNumber(v []byte) bool {
	if len(v) == 0 {
		return false
	}
	c := v[0]
	if c != '-' && (c < '0' || c > '9') {
		return false
	}
	_, err := strconv.ParseFloat(string(v), 64)
	return err == nil
}

// chatRequest is what the gateway reads of a request body.
type chatRequest struct {
	model  string
	stream bool
	// includeUsage: stream_options.include_usage is true.
	includeUsage bool
	// streamOptions is the raw stream_options value, nil when absent.
	streamOptions []byte
	soStart       int // offset of streamOptions in the body
	// end is the offset of the body's closing '}'.
	end int
}

var requestFields = []string{"model", "stream", "stream_options"}

// parseRequest reads model, stream and stream_options from a request body.
// The error is what the caller is told.
func parseRequest(body []byte) (chatRequest, error) {
	var r chatRequest
	var vals [3][]byte
	var dup string
	end, err := eachMember(body, 0, func(m member) bool {
		for i, n := range requestFields {
			if m.keyIs(n) {
				if vals[i] != nil {
					dup = n
					return false
				}
				vals[i] = body[m.valStart:m.valEnd]
				if i == 2 {
					r.soStart = m.valStart
				}
				break
			}
		}
		return true
	})
	switch {
	case err != nil:
		return r, errors.New("request body: expected a JSON object")
	case dup != "":
		return r, errors.New("request body: duplicate key " + strconv.Quote(dup))
	}
	if end >= len(body) || body[end] != '}' {
		return r, errors.New("request body: expected a JSON object")
	}
	r.end = end
	if vals[0] == nil {
		return r, errors.New("request body: missing model: expected the model name")
	}
	if r.model, _ = jsonString(vals[0]); r.model == "" {
		return r, errors.New("request body: model: expected a non-empty string")
	}
	switch string(vals[1]) {
	case "", "false", "null":
	case "true":
		r.stream = true
	default:
		return r, errors.New("request body: stream: expected true or false")
	}
	if so := vals[2]; so != nil && !isNull(so) {
		if !isObject(so) {
			return r, errors.New("request body: stream_options: expected an object")
		}
		r.streamOptions = so
		var iu [1][]byte
		if err := fields(so, []string{"include_usage"}, iu[:]); err != nil {
			return r, errors.New("request body: stream_options: " + err.Error())
		}
		r.includeUsage = string(iu[0]) == "true"
	} else if so != nil {
		r.streamOptions = so // null
	}
	return r, nil
}

// injectIncludeUsage appends to dst a copy of body whose
// stream_options.include_usage is true, keeping every other byte.
func injectIncludeUsage(dst, body []byte, r *chatRequest) []byte {
	const opt = `{"include_usage":true}`
	so := r.streamOptions
	switch {
	case so == nil:
		// No stream_options: add it as the last member.
		dst = append(dst, body[:r.end]...)
		dst = append(dst, `,"stream_options":`...)
		dst = append(dst, opt...)
		return append(dst, body[r.end:]...)
	case isNull(so):
		dst = append(dst, body[:r.soStart]...)
		dst = append(dst, opt...)
		return append(dst, body[r.soStart+len(so):]...)
	}
	// An object: replace include_usage's value, or add it first.
	valStart, valEnd := -1, -1
	_, _ = eachMember(so, 0, func(m member) bool {
		if m.keyIs("include_usage") {
			valStart, valEnd = m.valStart, m.valEnd
			return false
		}
		return true
	})
	if valStart >= 0 {
		dst = append(dst, body[:r.soStart+valStart]...)
		dst = append(dst, "true"...)
		return append(dst, body[r.soStart+valEnd:]...)
	}
	open := r.soStart + bytes.IndexByte(so, '{') + 1
	dst = append(dst, body[:open]...)
	dst = append(dst, `"include_usage":true`...)
	if skipSpace(so, open-r.soStart) < len(so)-1 {
		dst = append(dst, ',')
	}
	return append(dst, body[open:]...)
}
