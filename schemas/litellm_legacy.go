package schemas

import (
	"strconv"
	"strings"
	"unicode/utf8"
)

// LiteLLM's legacy v1 webhook payload (litellm.generic_api_use_v1 = True).
//
// Every value went through Python's str(): "startTime" is a naive local
// datetime ("2026-02-22 00:00:00.123456", zone from
// DecodeOptions.LiteLLMLegacyTimeZone), "cost" is "0.02025", "user" is the
// end user, and "usage" and "metadata" are Python reprs:
//
//	usage:    completion_tokens=450 prompt_tokens=11200 total_tokens=11650
//	          completion_tokens_details=CompletionTokensDetailsWrapper(reasoning_tokens=120, ...)
//	          prompt_tokens_details=PromptTokensDetailsWrapper(cached_tokens=8000, ...)
//	          (pydantic's str() of litellm.Usage), or
//	          "{'prompt_tokens': 11200, ...}" when usage was a dict
//	metadata: "{'user_api_key_alias': 'search-backend-prod', ...}"
//
// We parse these reprs with a small tolerant parser (pyrepr below) that
// understands dicts, lists, tuples, strings, numbers, None/True/False,
// Name(k=v, ...) constructor reprs and pydantic's space-separated k=v form;
// anything else (<object at 0x...>, datetime(...) positional calls) parses
// to an opaque value. If usage cannot be parsed, the record is refused with
// the parser's reason. Customer paths "end_user" and "user" read the legacy
// "user" field; "metadata.<path>" reads the parsed metadata repr. The usage
// convention is LiteLLM's usual inclusive one.

func (d *liteLLMDecoder) legacyEvent(idx int, v []rawValue, ev *UsageEvent) (bool, error) {
	id, reason := v[d.id].text(true)
	if reason != "" {
		return false, llErr(idx, "id", reason)
	}
	if id == "" || id == "None" {
		return false, llErr(idx, "id", "missing payload id")
	}
	if err := d.common(idx, v, ev, "legacy"); err != nil {
		return false, err
	}
	var usage *pyValue
	switch uv := v[d.legacyUsage]; uv.kind {
	case kindString:
		text, _ := uv.text(false)
		var err error
		if usage, err = parsePyRepr(text); err != nil {
			return false, llErr(idx, "usage", "legacy usage repr: "+err.Error())
		}
	case kindObject:
		// A sender that kept usage as JSON.
		p, err := jsonToPy(uv.raw)
		if err != nil {
			return false, llErr(idx, "usage", err.Error())
		}
		usage = p
	default:
		return false, llErr(idx, "usage", "expected the usage repr string, got "+kindName(uv.kind))
	}
	var iu inclusiveUsage
	for f, path := range legacyUsagePaths {
		if path == "" {
			continue
		}
		n, ok, reason := usage.count(path)
		if reason != "" {
			return false, llErr(idx, "usage."+path, reason)
		}
		if ok {
			iu.put(f, n)
		}
	}
	for _, alt := range [...]struct {
		f    int
		path string
	}{{iuCachedRead, "cache_read_input_tokens"}, {iuCacheWrite, "cache_creation_input_tokens"}} {
		if iu.has(alt.f) {
			continue
		}
		n, ok, reason := usage.count(alt.path)
		if reason != "" {
			return false, llErr(idx, "usage."+alt.path, reason)
		}
		if ok {
			iu.put(alt.f, n)
		}
	}
	if !iu.has(iuPrompt) && !iu.has(iuCompletion) {
		return false, llErr(idx, "usage", "legacy usage has neither prompt_tokens nor completion_tokens")
	}
	var names [iuNumFields]string
	for f, p := range legacyUsagePaths {
		names[f] = "usage." + p
	}
	if f, reason := iu.quantities(&ev.Quantities, &names); reason != "" {
		return false, llErr(idx, f, reason)
	}
	ev.Quantities[UnitRequests] = 1

	// Identity: "user", then metadata paths.
	var meta *pyValue
	var metaErr error
	metaParsed := false
	metadata := func() *pyValue {
		if !metaParsed {
			metaParsed = true
			text, _ := v[d.legacyMetadata].text(false)
			if text != "" && text != "None" {
				meta, metaErr = parsePyRepr(text)
			}
		}
		return meta
	}
	for _, field := range d.opts.LiteLLMCustomerFields {
		var c string
		switch {
		case field == "end_user" || field == "user":
			c, _ = v[d.legacyUser].text(true)
		case strings.HasPrefix(field, "metadata."):
			if m := metadata(); m != nil {
				c = m.str(strings.TrimPrefix(field, "metadata."))
			}
		}
		if c != "" && c != "None" {
			ev.CustomerID = c
			break
		}
	}
	if ev.CustomerID == "" {
		reason := "missing customer id: none of " + strings.Join(d.opts.LiteLLMCustomerFields, ", ") + " is set in the legacy payload"
		if metaErr != nil {
			reason += " (metadata repr: " + metaErr.Error() + ")"
		}
		return false, llErr(idx, "user", reason)
	}
	for _, dim := range d.opts.LiteLLMDimensions {
		if !strings.HasPrefix(dim.Path, "metadata.") {
			continue
		}
		if m := metadata(); m != nil {
			if val := m.str(strings.TrimPrefix(dim.Path, "metadata.")); val != "" && val != "None" {
				ev.Dimensions = append(ev.Dimensions, Dimension{Key: dim.Key, Value: val})
			}
		}
	}
	ev.ID = "litellm:" + id
	return true, nil
}

// legacyUsagePaths maps inclusive-usage fields to their dotted paths in a
// LiteLLM Usage repr.
var legacyUsagePaths = [iuNumFields]string{
	iuPrompt:       "prompt_tokens",
	iuCompletion:   "completion_tokens",
	iuCachedRead:   "prompt_tokens_details.cached_tokens",
	iuCacheWrite:   "prompt_tokens_details.cache_creation_tokens",
	iuCacheWrite5m: "prompt_tokens_details.cache_creation_token_details.ephemeral_5m_input_tokens",
	iuCacheWrite1h: "prompt_tokens_details.cache_creation_token_details.ephemeral_1h_input_tokens",
	iuAudioIn:      "prompt_tokens_details.audio_tokens",
	iuImageIn:      "prompt_tokens_details.image_tokens",
	iuReasoning:    "completion_tokens_details.reasoning_tokens",
	iuAudioOut:     "completion_tokens_details.audio_tokens",
	iuImageOut:     "completion_tokens_details.image_tokens",
	iuWebSearch:    "server_tool_use.web_search_requests",
}

// pyValue is a parsed Python repr.
type pyValue struct {
	kind   byte // 'd' dict/object, 'l' list, 's' string, 'n' number, 'N' None, 'b' bool, 'o' opaque
	text   string
	keys   []string
	fields []*pyValue
	items  []*pyValue
}

// get follows a dotted path through dicts and constructor reprs.
func (p *pyValue) get(path string) *pyValue {
	cur := p
	for seg := range strings.SplitSeq(path, ".") {
		if cur == nil || cur.kind != 'd' {
			return nil
		}
		var next *pyValue
		for i, k := range cur.keys {
			if k == seg {
				next = cur.fields[i]
			}
		}
		cur = next
	}
	return cur
}

func (p *pyValue) str(path string) string {
	v := p.get(path)
	if v == nil || (v.kind != 's' && v.kind != 'n') {
		return ""
	}
	return v.text
}

// count reads a count at path: absent or None is not present.
func (p *pyValue) count(path string) (int64, bool, string) {
	v := p.get(path)
	if v == nil || v.kind == 'N' {
		return 0, false, ""
	}
	if v.kind != 'n' {
		return 0, false, "expected an integer count"
	}
	n, reason := parseCount([]byte(v.text))
	return n, reason == "", reason
}

type pyParser struct {
	s     string
	pos   int
	depth int
}

// parsePyRepr parses a Python repr or pydantic str() into a pyValue.
func parsePyRepr(s string) (*pyValue, error) {
	p := &pyParser{s: s}
	p.ws()
	// pydantic's str(): "a=1 b=Foo(c=2)" (no enclosing brackets).
	if p.isKwArg() {
		v := &pyValue{kind: 'd'}
		for !p.end() {
			k, val, err := p.kwArg()
			if err != nil {
				return nil, err
			}
			v.keys, v.fields = append(v.keys, k), append(v.fields, val)
			p.ws()
			if p.peek() == ',' {
				p.pos++
				p.ws()
			}
		}
		return v, nil
	}
	v, err := p.value()
	if err != nil {
		return nil, err
	}
	p.ws()
	if !p.end() {
		return nil, p.errf("unexpected trailing text")
	}
	return v, nil
}

type pyError struct {
	pos    int
	reason string
}

func (e *pyError) Error() string { return e.reason + " at offset " + strconv.Itoa(e.pos) }

func (p *pyParser) errf(reason string) error { return &pyError{p.pos, reason} }
func (p *pyParser) end() bool                { return p.pos >= len(p.s) }
func (p *pyParser) peek() byte {
	if p.pos < len(p.s) {
		return p.s[p.pos]
	}
	return 0
}
func (p *pyParser) ws() {
	for p.pos < len(p.s) && (p.s[p.pos] == ' ' || p.s[p.pos] == '\n' || p.s[p.pos] == '\t' || p.s[p.pos] == '\r') {
		p.pos++
	}
}

func isIdentByte(c byte, first bool) bool {
	return c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (!first && c >= '0' && c <= '9')
}

func (p *pyParser) ident() string {
	start := p.pos
	for p.pos < len(p.s) && isIdentByte(p.s[p.pos], p.pos == start) {
		p.pos++
	}
	return p.s[start:p.pos]
}

// isKwArg reports whether the input at pos is "ident=" (not "==").
func (p *pyParser) isKwArg() bool {
	save := p.pos
	defer func() { p.pos = save }()
	if p.ident() == "" {
		return false
	}
	return p.peek() == '=' && (p.pos+1 >= len(p.s) || p.s[p.pos+1] != '=')
}

func (p *pyParser) kwArg() (string, *pyValue, error) {
	k := p.ident()
	if k == "" || p.peek() != '=' {
		return "", nil, p.errf("expected name=value")
	}
	p.pos++
	v, err := p.value()
	return k, v, err
}

func (p *pyParser) value() (*pyValue, error) {
	p.ws()
	p.depth++
	defer func() { p.depth-- }()
	if p.depth > maxDepth {
		return nil, p.errf("nesting too deep")
	}
	c := p.peek()
	switch {
	case c == '{':
		p.pos++
		v := &pyValue{kind: 'd'}
		for {
			p.ws()
			if p.peek() == '}' {
				p.pos++
				return v, nil
			}
			k, err := p.value()
			if err != nil {
				return nil, err
			}
			p.ws()
			if p.peek() != ':' {
				return nil, p.errf("expected ':' in dict")
			}
			p.pos++
			val, err := p.value()
			if err != nil {
				return nil, err
			}
			v.keys, v.fields = append(v.keys, k.text), append(v.fields, val)
			if err := p.sep('}'); err != nil {
				return nil, err
			}
		}
	case c == '[' || c == '(':
		closer := byte(']')
		if c == '(' {
			closer = ')'
		}
		p.pos++
		v := &pyValue{kind: 'l'}
		for {
			p.ws()
			if p.peek() == closer {
				p.pos++
				return v, nil
			}
			item, err := p.value()
			if err != nil {
				return nil, err
			}
			v.items = append(v.items, item)
			if err := p.sep(closer); err != nil {
				return nil, err
			}
		}
	case c == '\'' || c == '"':
		return p.str()
	case c == '-' || (c >= '0' && c <= '9'):
		start := p.pos
		p.pos++
		for p.pos < len(p.s) && (p.s[p.pos] >= '0' && p.s[p.pos] <= '9' || p.s[p.pos] == '.' || p.s[p.pos] == 'e' || p.s[p.pos] == 'E' || p.s[p.pos] == '+' || p.s[p.pos] == '-') {
			p.pos++
		}
		text := p.s[start:p.pos]
		if !validNumber([]byte(text)) {
			return &pyValue{kind: 'o', text: text}, nil
		}
		return &pyValue{kind: 'n', text: text}, nil
	case c == '<':
		// <Foo object at 0x7f...>: opaque.
		depth := 0
		for ; p.pos < len(p.s); p.pos++ {
			switch p.s[p.pos] {
			case '<':
				depth++
			case '>':
				depth--
			}
			if depth == 0 {
				p.pos++
				return &pyValue{kind: 'o'}, nil
			}
		}
		return nil, p.errf("unterminated <...>")
	case isIdentByte(c, true):
		// String prefixes: r'..', b'..', u'..', f'..'.
		if p.pos+1 < len(p.s) && (p.s[p.pos+1] == '\'' || p.s[p.pos+1] == '"') && strings.IndexByte("rbuRBU", c) >= 0 {
			p.pos++
			return p.str()
		}
		name := p.ident()
		for p.peek() == '.' { // datetime.datetime(...), Enum.MEMBER
			p.pos++
			name += "." + p.ident()
		}
		if p.peek() == '(' {
			p.pos++
			v := &pyValue{kind: 'd', text: name}
			for {
				p.ws()
				if p.peek() == ')' {
					p.pos++
					if len(v.keys) == 0 && len(v.items) > 0 {
						v.kind = 'o' // positional-only call: opaque
					}
					return v, nil
				}
				if p.isKwArg() {
					k, val, err := p.kwArg()
					if err != nil {
						return nil, err
					}
					v.keys, v.fields = append(v.keys, k), append(v.fields, val)
				} else {
					item, err := p.value()
					if err != nil {
						return nil, err
					}
					v.items = append(v.items, item)
				}
				if err := p.sep(')'); err != nil {
					return nil, err
				}
			}
		}
		switch name {
		case "None":
			return &pyValue{kind: 'N'}, nil
		case "True", "False":
			return &pyValue{kind: 'b', text: name}, nil
		case "":
			return nil, p.errf("unexpected character")
		}
		return &pyValue{kind: 'o', text: name}, nil
	case c == 0:
		return nil, p.errf("unexpected end of repr")
	}
	return nil, p.errf("unexpected " + strconv.QuoteRune(rune(c)))
}

// sep consumes a ',' or peeks the closer.
func (p *pyParser) sep(closer byte) error {
	p.ws()
	switch p.peek() {
	case ',':
		p.pos++
		return nil
	case closer:
		return nil
	}
	return p.errf("expected ',' or " + strconv.QuoteRune(rune(closer)))
}

// str parses a quoted Python string literal, decoding common escapes.
func (p *pyParser) str() (*pyValue, error) {
	q := p.s[p.pos]
	p.pos++
	var b strings.Builder
	for p.pos < len(p.s) {
		c := p.s[p.pos]
		switch {
		case c == q:
			p.pos++
			return &pyValue{kind: 's', text: b.String()}, nil
		case c == '\\' && p.pos+1 < len(p.s):
			e := p.s[p.pos+1]
			p.pos += 2
			switch e {
			case 'n':
				b.WriteByte('\n')
			case 't':
				b.WriteByte('\t')
			case 'r':
				b.WriteByte('\r')
			case 'x', 'u', 'U':
				n := map[byte]int{'x': 2, 'u': 4, 'U': 8}[e]
				if p.pos+n > len(p.s) {
					return nil, p.errf("bad escape")
				}
				r, err := strconv.ParseUint(p.s[p.pos:p.pos+n], 16, 32)
				if err != nil || r > utf8.MaxRune {
					return nil, p.errf("bad escape")
				}
				b.WriteRune(rune(r))
				p.pos += n
			default:
				b.WriteByte(e)
			}
		default:
			b.WriteByte(c)
			p.pos++
		}
	}
	return nil, p.errf("unterminated string")
}

// jsonToPy converts a JSON object (legacy usage kept as JSON) to a pyValue.
func jsonToPy(raw []byte) (*pyValue, error) {
	s := scanner{data: raw}
	return jsonToPyValue(&s)
}

func jsonToPyValue(s *scanner) (*pyValue, error) {
	switch s.peek() {
	case '{':
		v := &pyValue{kind: 'd'}
		more, err := s.objectStart()
		for err == nil && more {
			var key []byte
			if key, err = s.objectKey(); err != nil {
				break
			}
			k := string(key)
			var val *pyValue
			if val, err = jsonToPyValue(s); err != nil {
				break
			}
			v.keys, v.fields = append(v.keys, k), append(v.fields, val)
			more, err = s.objectNext()
		}
		return v, err
	}
	rv, err := s.readValue()
	if err != nil {
		return nil, err
	}
	switch rv.kind {
	case kindNumber:
		return &pyValue{kind: 'n', text: string(rv.raw)}, nil
	case kindNull:
		return &pyValue{kind: 'N'}, nil
	case kindString:
		t, _ := rv.text(false)
		return &pyValue{kind: 's', text: t}, nil
	}
	return &pyValue{kind: 'o'}, nil
}
