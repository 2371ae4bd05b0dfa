package schemas

import (
	"encoding/binary"
	"math/bits"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"
)

// scanner is a strict, allocation-free JSON reader over one message. The
// decoders drive it key by key instead of unmarshalling into structs: that is
// what keeps the gateway decoder under 1 µs and 2 allocations per event, and
// it lets every decoder name the exact field that is wrong.
//
// It accepts exactly RFC 8259 JSON: it rejects control characters and invalid
// UTF-8 in strings, bad escapes, leading zeros, trailing garbage and nesting
// deeper than maxDepth. A lone UTF-16 surrogate escape (\ud800) is accepted
// and decodes to U+FFFD, as encoding/json does.
//
// Errors are *scanError values carrying the byte offset; decoders wrap them in
// a DecodeError that names the field.
type scanner struct {
	data  []byte
	pos   int
	depth int
	// key holds an unescaped object key when the key had escapes; keys
	// without escapes are returned as sub-slices of data.
	key []byte
}

// maxDepth bounds nesting so that a hostile message cannot make skipValue
// recurse without limit.
const maxDepth = 256

type scanError struct {
	pos    int
	reason string
}

func (e *scanError) Error() string { return e.reason + " at offset " + strconv.Itoa(e.pos) }

func (s *scanner) errf(reason string) error { return &scanError{pos: s.pos, reason: reason} }

func (s *scanner) unexpected(expected string) error {
	if s.pos >= len(s.data) {
		return s.errf("unexpected end of input; expected " + expected)
	}
	return s.errf("unexpected " + quoteByte(s.data[s.pos]) + "; expected " + expected)
}

func quoteByte(c byte) string {
	if c >= 0x20 && c < 0x7f {
		return strconv.QuoteRune(rune(c))
	}
	return "byte 0x" + strconv.FormatUint(uint64(c), 16)
}

// ws skips insignificant whitespace. The common case (no whitespace) is
// handled inline; wsSlow loops.
func (s *scanner) ws() {
	if s.pos < len(s.data) && s.data[s.pos] > ' ' {
		return
	}
	s.wsSlow()
}

func (s *scanner) wsSlow() { s.pos = skipWS(s.data, s.pos) }

// skipWS returns the offset of the first non-whitespace byte at or after i.
// Pretty-printed JSON puts a newline and a run of indentation spaces before
// most tokens; the run is measured a word at a time (the count of leading
// bytes equal to ' ' is TrailingZeros64(w ^ spaces) / 8).
func skipWS(d []byte, i int) int {
	const spaces = 0x2020202020202020
	for i < len(d) {
		switch d[i] {
		case ' ', '\n', '\t', '\r':
			i++
			for i+8 <= len(d) {
				x := binary.LittleEndian.Uint64(d[i:]) ^ spaces
				if x != 0 {
					i += bits.TrailingZeros64(x) >> 3
					break
				}
				i += 8
			}
		default:
			return i
		}
	}
	return i
}

// peek skips whitespace and returns the next byte, or 0 at the end.
func (s *scanner) peek() byte {
	s.ws()
	if s.pos < len(s.data) {
		return s.data[s.pos]
	}
	return 0
}

// atEnd reports whether only whitespace is left.
func (s *scanner) atEnd() bool {
	s.ws()
	return s.pos >= len(s.data)
}

// objectStart consumes '{' and reports whether the object has members.
func (s *scanner) objectStart() (bool, error) { return s.open('{', '}', "an object") }

// objectNext consumes ',' (more members follow: true) or '}' (false).
func (s *scanner) objectNext() (bool, error) { return s.next('}', "',' or '}'") }

// objectKey reads a member name and the ':' after it. The returned slice is
// valid until the next call to objectKey.
func (s *scanner) objectKey() ([]byte, error) {
	if s.peek() != '"' {
		return nil, s.unexpected("a string key")
	}
	raw, esc, err := s.stringRaw()
	if err != nil {
		return nil, err
	}
	if esc {
		s.key = appendUnescaped(s.key[:0], raw)
		raw = s.key
	}
	if s.peek() != ':' {
		return nil, s.unexpected("':'")
	}
	s.pos++
	return raw, nil
}

// arrayStart consumes '[' and reports whether the array has elements.
func (s *scanner) arrayStart() (bool, error) { return s.open('[', ']', "an array") }

// arrayNext consumes ',' (more elements: true) or ']' (false).
func (s *scanner) arrayNext() (bool, error) { return s.next(']', "',' or ']'") }

// open consumes the opening bracket of an object or array and reports
// whether it has members; an empty one is consumed whole.
func (s *scanner) open(open, close byte, what string) (bool, error) {
	if s.peek() != open {
		return false, s.unexpected(what)
	}
	s.pos++
	if s.peek() == close {
		s.pos++
		return false, nil
	}
	s.depth++
	if s.depth > maxDepth {
		return false, s.errf("nesting deeper than " + strconv.Itoa(maxDepth))
	}
	return true, nil
}

// next consumes ',' (more members follow: true) or close (false).
func (s *scanner) next(close byte, want string) (bool, error) {
	switch s.peek() {
	case ',':
		s.pos++
		return true, nil
	case close:
		s.pos++
		s.depth--
		return false, nil
	}
	return false, s.unexpected(want)
}

// null consumes a JSON null if one is next.
func (s *scanner) null() (bool, error) {
	if s.peek() != 'n' {
		return false, nil
	}
	return true, s.literal("null")
}

func (s *scanner) literal(lit string) error {
	if len(s.data)-s.pos < len(lit) || string(s.data[s.pos:s.pos+len(lit)]) != lit {
		return s.errf("invalid literal; expected " + lit)
	}
	s.pos += len(lit)
	return nil
}

// stringRaw reads a string whose opening quote is at s.pos and returns its
// raw contents (between the quotes, escapes not yet decoded) and whether it
// contains escapes. It validates escapes, control characters and UTF-8.
func (s *scanner) stringRaw() (raw []byte, esc bool, err error) {
	d := s.data
	i := s.pos + 1
	start := i
	nonASCII := false
	for {
		// Skip 8 plain bytes at a time: no quote, backslash, control
		// character or non-ASCII byte among them.
		for i+8 <= len(d) {
			w := binary.LittleEndian.Uint64(d[i:])
			if hasSpecialByte(w) {
				break
			}
			i += 8
		}
		if i >= len(d) {
			s.pos = i
			return nil, false, s.errf("unterminated string")
		}
		c := d[i]
		switch {
		case c == '"':
			raw = d[start:i]
			if nonASCII && !utf8.Valid(raw) {
				s.pos = start
				return nil, false, s.errf("invalid UTF-8 in string")
			}
			s.pos = i + 1
			return raw, esc, nil
		case c == '\\':
			esc = true
			if i+1 >= len(d) {
				s.pos = i
				return nil, false, s.errf("unterminated string")
			}
			switch d[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				if i+6 > len(d) || !isHex4(d[i+2:i+6]) {
					s.pos = i
					return nil, false, s.errf(`invalid \u escape`)
				}
				i += 6
			default:
				s.pos = i
				return nil, false, s.errf("invalid escape " + quoteByte(d[i+1]))
			}
		case c < 0x20:
			s.pos = i
			return nil, false, s.errf("control character in string")
		default:
			if c >= 0x80 {
				nonASCII = true
			}
			i++
		}
	}
}

// hasSpecialByte reports whether any byte of w is '"', '\\', below 0x20 or
// 0x80 and above: the bytes stringRaw must look at one by one. Standard
// SWAR tests: (x - 0x01..) & ^x & 0x80.. is nonzero iff some byte of x is
// zero, and (w - 0x20..) & ^w & 0x80.. iff some byte is below 0x20.
func hasSpecialByte(w uint64) bool {
	const (
		ones  = 0x0101010101010101
		highs = 0x8080808080808080
	)
	q := w ^ (ones * '"')
	b := w ^ (ones * '\\')
	return ((q-ones)&^q|(b-ones)&^b|(w-ones*0x20)|w)&highs != 0
}

func isHex4(b []byte) bool {
	for _, c := range b[:4] {
		if hexVal(c) < 0 {
			return false
		}
	}
	return true
}

func hexVal(c byte) int {
	switch {
	case c >= '0' && c <= '9':
		return int(c - '0')
	case c >= 'a' && c <= 'f':
		return int(c-'a') + 10
	case c >= 'A' && c <= 'F':
		return int(c-'A') + 10
	}
	return -1
}

func hex4(b []byte) rune {
	return rune(hexVal(b[0])<<12 | hexVal(b[1])<<8 | hexVal(b[2])<<4 | hexVal(b[3]))
}

// appendUnescaped appends the decoded form of raw, which stringRaw has
// already validated, to dst.
func appendUnescaped(dst, raw []byte) []byte {
	for i := 0; i < len(raw); {
		c := raw[i]
		if c != '\\' {
			// Copy the run up to the next escape in one go.
			j := i + 1
			for j < len(raw) && raw[j] != '\\' {
				j++
			}
			dst = append(dst, raw[i:j]...)
			i = j
			continue
		}
		switch raw[i+1] {
		case 'b':
			dst = append(dst, '\b')
		case 'f':
			dst = append(dst, '\f')
		case 'n':
			dst = append(dst, '\n')
		case 'r':
			dst = append(dst, '\r')
		case 't':
			dst = append(dst, '\t')
		case 'u':
			r := hex4(raw[i+2:])
			i += 6
			if utf16.IsSurrogate(r) {
				// A high surrogate followed by a low one is one rune;
				// anything else is a lone surrogate, which becomes
				// U+FFFD (as encoding/json does).
				if r < 0xdc00 && i+6 <= len(raw) && raw[i] == '\\' && raw[i+1] == 'u' {
					if r2 := hex4(raw[i+2:]); r2 >= 0xdc00 && r2 <= 0xdfff {
						dst = utf8.AppendRune(dst, utf16.DecodeRune(r, r2))
						i += 6
						continue
					}
				}
				r = utf8.RuneError
			}
			dst = utf8.AppendRune(dst, r)
			continue
		default: // '"', '\\', '/'
			dst = append(dst, raw[i+1])
		}
		i += 2
	}
	return dst
}

// numberRaw reads a JSON number and returns its text.
func (s *scanner) numberRaw() ([]byte, error) {
	d := s.data
	start := s.pos
	i := s.pos
	if i < len(d) && d[i] == '-' {
		i++
	}
	switch {
	case i < len(d) && d[i] == '0':
		i++
	case i < len(d) && d[i] >= '1' && d[i] <= '9':
		for i < len(d) && d[i] >= '0' && d[i] <= '9' {
			i++
		}
	default:
		s.pos = i
		return nil, s.unexpected("a digit")
	}
	if i < len(d) && d[i] == '.' {
		i++
		j := i
		for i < len(d) && d[i] >= '0' && d[i] <= '9' {
			i++
		}
		if i == j {
			s.pos = i
			return nil, s.unexpected("a digit after '.'")
		}
	}
	if i < len(d) && (d[i] == 'e' || d[i] == 'E') {
		i++
		if i < len(d) && (d[i] == '+' || d[i] == '-') {
			i++
		}
		j := i
		for i < len(d) && d[i] >= '0' && d[i] <= '9' {
			i++
		}
		if i == j {
			s.pos = i
			return nil, s.unexpected("a digit in the exponent")
		}
	}
	s.pos = i
	return d[start:i], nil
}

// skipValue validates and skips one value of any type.
//
// Skipping (the messages, the price map, the response choices of a LiteLLM
// payload) is most of what the partner decoders do, so this is one flat
// loop over local variables, with a bit stack of open containers instead of
// recursion and the common string, number and whitespace scans inlined. It
// validates exactly what the rest of the scanner does: anything unusual (an
// escape, non-ASCII, a fraction, a bad literal) is handed to the scanner's
// own method at that offset, which validates it or reports the error.
func (s *scanner) skipValue() error {
	var stack [maxDepth / 64]uint64 // bit set: the open container is an object
	depth := 0
	d := s.data
	n := len(d)
	i := s.pos
	var err error
value:
	if i < n && d[i] <= ' ' {
		i = skipWS(d, i)
	}
	if i >= n {
		s.pos = i
		return s.unexpected("a value")
	}
	switch c := d[i]; {
	case c == '{' || c == '[':
		if s.depth+depth >= maxDepth {
			s.pos = i
			return s.errf("nesting deeper than " + strconv.Itoa(maxDepth))
		}
		i++
		if i < n && d[i] <= ' ' {
			i = skipWS(d, i)
		}
		if c == '{' {
			if i < n && d[i] == '}' {
				i++
				goto after
			}
			stack[depth/64] |= 1 << (depth % 64)
			depth++
			goto key
		}
		if i < n && d[i] == ']' {
			i++
			goto after
		}
		stack[depth/64] &^= 1 << (depth % 64)
		depth++
		goto value
	case c == '"':
		q := i
		i++
		for {
			for i+8 <= n && !hasSpecialByte(binary.LittleEndian.Uint64(d[i:])) {
				i += 8
			}
			if i >= n {
				break
			}
			c := d[i]
			if c == '"' {
				i++
				goto after
			}
			if c == '\\' || c < 0x20 || c >= 0x80 {
				break
			}
			i++
		}
		// An escape, a control character, non-ASCII or the end: let
		// stringRaw validate the whole string from its quote.
		s.pos = q
		if _, _, err = s.stringRaw(); err != nil {
			return err
		}
		i = s.pos
	case c == '-' || (c >= '0' && c <= '9'):
		// Fast path: plain integers; anything else goes to numberRaw.
		j := i
		if c == '-' {
			j++
		}
		if j < n && d[j] >= '1' && d[j] <= '9' {
			for j < n && d[j] >= '0' && d[j] <= '9' {
				j++
			}
			if j >= n || (d[j] != '.' && d[j] != 'e' && d[j] != 'E') {
				i = j
				goto after
			}
		}
		s.pos = i
		if _, err = s.numberRaw(); err != nil {
			return err
		}
		i = s.pos
	case c == 't' || c == 'f' || c == 'n':
		lit := "null"
		if c == 't' {
			lit = "true"
		} else if c == 'f' {
			lit = "false"
		}
		if n-i >= len(lit) && string(d[i:i+len(lit)]) == lit {
			i += len(lit)
			goto after
		}
		s.pos = i
		return s.literal(lit)
	default:
		s.pos = i
		return s.unexpected("a value")
	}
after:
	if depth == 0 {
		s.pos = i
		return nil
	}
	if i < n && d[i] <= ' ' {
		i = skipWS(d, i)
	}
	if i >= n {
		s.pos = i
		return s.unexpected("',' or a closing bracket")
	}
	if stack[(depth-1)/64]&(1<<((depth-1)%64)) != 0 {
		switch d[i] {
		case ',':
			i++
			goto key
		case '}':
			i++
			depth--
			goto after
		}
		s.pos = i
		return s.unexpected("',' or '}'")
	}
	switch d[i] {
	case ',':
		i++
		goto value
	case ']':
		i++
		depth--
		goto after
	}
	s.pos = i
	return s.unexpected("',' or ']'")
key:
	// The key is validated but not decoded: nobody looks at it.
	s.pos = i
	s.ws()
	if s.pos >= n || d[s.pos] != '"' {
		return s.unexpected("a string key")
	}
	if _, _, err = s.stringRaw(); err != nil {
		return err
	}
	s.ws()
	if s.pos >= n || d[s.pos] != ':' {
		return s.unexpected("':'")
	}
	i = s.pos + 1
	goto value
}

// value kinds as recorded by rawValue.
const (
	kindString = '"'
	kindNumber = '0'
	kindNull   = 'n'
	kindBool   = 't'
	kindObject = '{'
	kindArray  = '['
)

// rawValue is one value's location in the message: its raw text (for a
// string, the contents between the quotes, escapes not decoded; for an
// object or array, the whole text, so it can be rescanned).
type rawValue struct {
	kind byte
	esc  bool // string has escapes
	raw  []byte
	// start is the offset of the value's first byte, so that an object or
	// array can be rescanned.
	start int
}

func (v rawValue) isSet() bool { return v.kind != 0 }

// readValue reads any value and records where it is.
func (s *scanner) readValue() (rawValue, error) {
	c := s.peek()
	start := s.pos
	switch {
	case c == '"':
		raw, esc, err := s.stringRaw()
		return rawValue{kind: kindString, esc: esc, raw: raw}, err
	case c == '-' || (c >= '0' && c <= '9'):
		raw, err := s.numberRaw()
		return rawValue{kind: kindNumber, raw: raw}, err
	case c == 'n':
		err := s.literal("null")
		return rawValue{kind: kindNull, raw: s.data[start:s.pos]}, err
	case c == 't' || c == 'f':
		err := s.skipValue()
		return rawValue{kind: kindBool, raw: s.data[start:s.pos]}, err
	case c == '{' || c == '[':
		err := s.skipValue()
		return rawValue{kind: c, raw: s.data[start:s.pos]}, err
	}
	return rawValue{}, s.unexpected("a value")
}

// kindName names a value kind for error messages.
func kindName(k byte) string {
	switch k {
	case kindString:
		return "a string"
	case kindNumber:
		return "a number"
	case kindNull:
		return "null"
	case kindBool:
		return "a boolean"
	case kindObject:
		return "an object"
	case kindArray:
		return "an array"
	}
	return "nothing"
}

// records iterates over the records of a message: one object, a JSON array of
// objects, or newline-delimited (in fact any whitespace-delimited) objects.
// For each record, fn is called with the scanner positioned at the record's
// '{' and its 0-based index, and must consume exactly that object.
func (s *scanner) records(fn func(idx int) error) (recordErr int, err error) {
	switch s.peek() {
	case '[':
		more, err := s.arrayStart()
		if err != nil {
			return 0, err
		}
		idx := 0
		for more {
			if s.peek() != '{' {
				return idx, s.unexpected("an object")
			}
			if err := fn(idx); err != nil {
				return idx, err
			}
			idx++
			if more, err = s.arrayNext(); err != nil {
				return idx, err
			}
		}
		if !s.atEnd() {
			return idx, s.unexpected("end of input after the array")
		}
		return idx, nil
	case '{':
		idx := 0
		for !s.atEnd() {
			if s.peek() != '{' {
				return idx, s.unexpected("an object (NDJSON record)")
			}
			if err := fn(idx); err != nil {
				return idx, err
			}
			idx++
		}
		return idx, nil
	}
	return 0, s.unexpected("a JSON object or array")
}
