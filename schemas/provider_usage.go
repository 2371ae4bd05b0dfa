package schemas

import "strconv"

// Provider usage conventions, normalized into exclusive Units.
//
// OpenAI (Chat Completions and Responses), LiteLLM and OpenRouter report the
// inclusive form: prompt/input tokens include cache reads, cache writes and
// audio/image input; completion/output tokens include reasoning, audio and
// image output. Anthropic reports input_tokens exclusive of cache reads and
// cache writes; its output_tokens include thinking. Both become exclusive
// buckets here, so every token is billed once.

// Fields of an inclusive (OpenAI-style) usage object.
const (
	iuPrompt = iota
	iuCompletion
	iuCachedRead
	iuCacheWrite   // total cache writes (5m unless split)
	iuCacheWrite5m // split, when the source gives one
	iuCacheWrite1h
	iuAudioIn
	iuImageIn
	iuReasoning
	iuAudioOut
	iuImageOut
	iuWebSearch
	iuNumFields
)

// inclusiveUsage holds an inclusive usage object's counts. set has bit f when
// field f was present (and not null).
type inclusiveUsage struct {
	v   [iuNumFields]int64
	set uint32
}

func (u *inclusiveUsage) put(f int, v int64) { u.v[f] = v; u.set |= 1 << f }
func (u *inclusiveUsage) has(f int) bool     { return u.set&(1<<f) != 0 }

// quantities converts inclusive counts into exclusive buckets. field names
// the usage object for error messages; names maps the iu* fields to the
// source's own names so the reason quotes what the sender wrote.
func (u *inclusiveUsage) quantities(q *[NumUnits]int64, names *[iuNumFields]string) (string, string) {
	w5, w1h, err := splitWrites(u.v[iuCacheWrite], u.has(iuCacheWrite), u.v[iuCacheWrite5m], u.has(iuCacheWrite5m), u.v[iuCacheWrite1h], u.has(iuCacheWrite1h))
	if err != "" {
		return names[iuCacheWrite], err
	}
	parts := u.v[iuCachedRead] + w5 + w1h + u.v[iuAudioIn] + u.v[iuImageIn]
	if u.v[iuPrompt] < parts {
		return names[iuPrompt], names[iuPrompt] + " " + strconv.FormatInt(u.v[iuPrompt], 10) +
			" is less than its cached, cache-write, audio and image parts (" + strconv.FormatInt(parts, 10) + ")"
	}
	outParts := u.v[iuReasoning] + u.v[iuAudioOut] + u.v[iuImageOut]
	if u.v[iuCompletion] < outParts {
		return names[iuCompletion], names[iuCompletion] + " " + strconv.FormatInt(u.v[iuCompletion], 10) +
			" is less than its reasoning, audio and image parts (" + strconv.FormatInt(outParts, 10) + ")"
	}
	q[UnitInput] += u.v[iuPrompt] - parts
	q[UnitCachedInput] += u.v[iuCachedRead]
	q[UnitCacheWrite5m] += w5
	q[UnitCacheWrite1h] += w1h
	q[UnitAudioInput] += u.v[iuAudioIn]
	q[UnitImageInput] += u.v[iuImageIn]
	q[UnitOutput] += u.v[iuCompletion] - outParts
	q[UnitReasoning] += u.v[iuReasoning]
	q[UnitAudioOutput] += u.v[iuAudioOut]
	q[UnitImageOutput] += u.v[iuImageOut]
	q[UnitWebSearch] += u.v[iuWebSearch]
	return "", ""
}

// splitWrites decides the 5-minute / 1-hour cache-write split. With a split
// given, it must add up to the total (when the total is given too): billing
// software does not guess which of two disagreeing numbers is right. With no
// split, every write is a 5-minute write, the default rate everywhere.
func splitWrites(total int64, hasTotal bool, w5 int64, has5 bool, w1h int64, has1h bool) (int64, int64, string) {
	if !has5 && !has1h {
		return total, 0, ""
	}
	if hasTotal && w5+w1h != total {
		return 0, 0, "cache writes " + strconv.FormatInt(total, 10) + " do not match their 5m/1h split " +
			strconv.FormatInt(w5, 10) + "+" + strconv.FormatInt(w1h, 10)
	}
	return w5, w1h, ""
}

var openAINames = [iuNumFields]string{
	iuPrompt:       "prompt_tokens",
	iuCompletion:   "completion_tokens",
	iuCachedRead:   "prompt_tokens_details.cached_tokens",
	iuCacheWrite:   "prompt_tokens_details.cache_write_tokens",
	iuCacheWrite5m: "cache_creation_token_details.ephemeral_5m_input_tokens",
	iuCacheWrite1h: "cache_creation_token_details.ephemeral_1h_input_tokens",
	iuAudioIn:      "prompt_tokens_details.audio_tokens",
	iuImageIn:      "prompt_tokens_details.image_tokens",
	iuReasoning:    "completion_tokens_details.reasoning_tokens",
	iuAudioOut:     "completion_tokens_details.audio_tokens",
	iuImageOut:     "completion_tokens_details.image_tokens",
	iuWebSearch:    "server_tool_use.web_search_requests",
}

// count reads a count or null. Null counts as absent.
func (s *scanner) count() (v int64, present bool, err error) {
	switch c := s.peek(); {
	case c == 'n':
		return 0, false, s.literal("null")
	case c == '-' || (c >= '0' && c <= '9'):
		start := s.pos
		raw, err := s.numberRaw()
		if err != nil {
			return 0, false, err
		}
		v, reason := parseCount(raw)
		if reason != "" {
			return 0, false, &scanError{pos: start, reason: reason}
		}
		return v, true, nil
	case c == 0:
		return 0, false, s.unexpected("a count")
	default:
		start := s.pos
		rv, err := s.readValue()
		if err != nil {
			return 0, false, err
		}
		return 0, false, &scanError{pos: start, reason: "expected a non-negative integer count, got " + kindName(rv.kind)}
	}
}

// putCount reads a count into u's field f, refusing a duplicate key.
func (s *scanner) putCount(u *inclusiveUsage, f int) error {
	if u.has(f) {
		return s.errf("duplicate key")
	}
	v, ok, err := s.count()
	if err == nil && ok {
		u.put(f, v)
	}
	return err
}

// scanOpenAIUsage reads an OpenAI Chat Completions usage object
// (prompt_tokens...) or a Responses usage object (input_tokens...): both are
// inclusive and share their meaning. On error it returns the failing field's
// path relative to the object.
func scanOpenAIUsage(s *scanner, u *inclusiveUsage) (string, error) {
	more, err := s.objectStart()
	if err != nil {
		return "", err
	}
	var seen uint8
	for more {
		key, err := s.objectKey()
		if err != nil {
			return "", err
		}
		switch string(key) {
		case "prompt_tokens", "input_tokens":
			err = s.putCount(u, iuPrompt)
		case "completion_tokens", "output_tokens":
			err = s.putCount(u, iuCompletion)
		case "prompt_tokens_details", "input_tokens_details":
			if seen&1 != 0 {
				return string(key), s.errf("duplicate key")
			}
			seen |= 1
			var sub string
			sub, err = scanDetails(s, u, false)
			if err != nil {
				return string(key) + dotted(sub), err
			}
		case "completion_tokens_details", "output_tokens_details":
			if seen&2 != 0 {
				return string(key), s.errf("duplicate key")
			}
			seen |= 2
			var sub string
			sub, err = scanDetails(s, u, true)
			if err != nil {
				return string(key) + dotted(sub), err
			}
		default:
			err = s.skipValue()
		}
		if err != nil {
			return string(key), err
		}
		if more, err = s.objectNext(); err != nil {
			return "", err
		}
	}
	if !u.has(iuPrompt) {
		return "prompt_tokens", s.errf("missing prompt_tokens (or input_tokens)")
	}
	if !u.has(iuCompletion) {
		return "completion_tokens", s.errf("missing completion_tokens (or output_tokens)")
	}
	return "", nil
}

// scanDetails reads prompt_tokens_details or completion_tokens_details (or
// their Responses names), or null.
func scanDetails(s *scanner, u *inclusiveUsage, completion bool) (string, error) {
	if ok, err := s.null(); ok || err != nil {
		return "", err
	}
	more, err := s.objectStart()
	if err != nil {
		return "", err
	}
	for more {
		key, err := s.objectKey()
		if err != nil {
			return "", err
		}
		f := -1
		switch string(key) {
		case "cached_tokens":
			if !completion {
				f = iuCachedRead
			}
		case "cache_write_tokens", "cache_creation_tokens":
			if !completion {
				f = iuCacheWrite
			}
		case "audio_tokens":
			f = iuAudioIn
			if completion {
				f = iuAudioOut
			}
		case "image_tokens":
			f = iuImageIn
			if completion {
				f = iuImageOut
			}
		case "reasoning_tokens":
			if completion {
				f = iuReasoning
			}
		}
		if f >= 0 {
			err = s.putCount(u, f)
		} else {
			err = s.skipValue()
		}
		if err != nil {
			return string(key), err
		}
		if more, err = s.objectNext(); err != nil {
			return "", err
		}
	}
	return "", nil
}

// Fields of an Anthropic Messages usage object.
const (
	auInput = iota
	auOutput
	auCacheWrite
	auCacheRead
	auWrite5m
	auWrite1h
	auThinking
	auWebSearch
	auNumFields
)

type anthropicUsage struct {
	v    [auNumFields]int64
	set  uint32
	tier rawValue // usage.service_tier, if given
}

func (u *anthropicUsage) has(f int) bool { return u.set&(1<<f) != 0 }

func (s *scanner) putAnthropic(u *anthropicUsage, f int, seen *uint32) error {
	if *seen&(1<<f) != 0 {
		return s.errf("duplicate key")
	}
	*seen |= 1 << f
	v, ok, err := s.count()
	if err == nil && ok {
		u.v[f] = v
		u.set |= 1 << f
	}
	return err
}

// scanAnthropicUsage reads an Anthropic usage object, or an array of them
// merged in order, later fields winning. The array form takes a stream's
// message_start usage followed by its final message_delta usage: the delta
// carries cumulative counts but may omit the input fields.
func scanAnthropicUsage(s *scanner, u *anthropicUsage) (string, error) {
	if s.peek() == '[' {
		more, err := s.arrayStart()
		if err != nil {
			return "", err
		}
		for i := 0; more; i++ {
			if f, err := scanAnthropicObject(s, u); err != nil {
				return "[" + strconv.Itoa(i) + "]" + dotted(f), err
			}
			if more, err = s.arrayNext(); err != nil {
				return "", err
			}
		}
	} else if f, err := scanAnthropicObject(s, u); err != nil {
		return f, err
	}
	if !u.has(auInput) {
		return "input_tokens", s.errf("missing input_tokens")
	}
	if !u.has(auOutput) {
		return "output_tokens", s.errf("missing output_tokens")
	}
	return "", nil
}

func dotted(f string) string {
	if f == "" || f[0] == '[' {
		return f
	}
	return "." + f
}

func scanAnthropicObject(s *scanner, u *anthropicUsage) (string, error) {
	more, err := s.objectStart()
	if err != nil {
		return "", err
	}
	var seen uint32
	var tierSeen bool
	for more {
		key, err := s.objectKey()
		if err != nil {
			return "", err
		}
		switch string(key) {
		case "input_tokens":
			err = s.putAnthropic(u, auInput, &seen)
		case "output_tokens":
			err = s.putAnthropic(u, auOutput, &seen)
		case "cache_creation_input_tokens":
			err = s.putAnthropic(u, auCacheWrite, &seen)
		case "cache_read_input_tokens":
			err = s.putAnthropic(u, auCacheRead, &seen)
		case "service_tier":
			if tierSeen {
				return "service_tier", s.errf("duplicate key")
			}
			tierSeen = true
			var v rawValue
			if v, err = s.readValue(); err == nil && v.kind != kindNull {
				if v.kind != kindString {
					return "service_tier", s.errf("expected a string, got " + kindName(v.kind))
				}
				u.tier = v
			}
		case "cache_creation":
			err = scanAnthropicDetailsField(s, u, "cache_creation", &seen)
		case "output_tokens_details":
			err = scanAnthropicDetailsField(s, u, "output_tokens_details", &seen)
		case "server_tool_use":
			err = scanAnthropicDetailsField(s, u, "server_tool_use", &seen)
		default:
			err = s.skipValue()
		}
		if err != nil {
			if fe, ok := err.(*fieldErr); ok {
				return string(key) + dotted(fe.field), fe.err
			}
			return string(key), err
		}
		if more, err = s.objectNext(); err != nil {
			return "", err
		}
	}
	return "", nil
}

func scanAnthropicDetails(s *scanner, u *anthropicUsage, obj string, seen *uint32) (string, error) {
	if ok, err := s.null(); ok || err != nil {
		return "", err
	}
	more, err := s.objectStart()
	if err != nil {
		return "", err
	}
	for more {
		key, err := s.objectKey()
		if err != nil {
			return "", err
		}
		f := -1
		// Compare without converting key to a string variable: a
		// conversion kept in a variable may allocate; one in a comparison
		// does not.
		switch obj {
		case "cache_creation":
			switch string(key) {
			case "ephemeral_5m_input_tokens":
				f = auWrite5m
			case "ephemeral_1h_input_tokens":
				f = auWrite1h
			}
		case "output_tokens_details":
			if string(key) == "thinking_tokens" {
				f = auThinking
			}
		case "server_tool_use":
			if string(key) == "web_search_requests" {
				f = auWebSearch
			}
		}
		if f >= 0 {
			err = s.putAnthropic(u, f, seen)
		} else {
			err = s.skipValue()
		}
		if err != nil {
			return string(key), err
		}
		if more, err = s.objectNext(); err != nil {
			return "", err
		}
	}
	return "", nil
}

// quantities converts Anthropic's exclusive input counts and inclusive
// output count into exclusive buckets.
func (u *anthropicUsage) quantities(q *[NumUnits]int64) (string, string) {
	w5, w1h, reason := splitWrites(u.v[auCacheWrite], u.has(auCacheWrite), u.v[auWrite5m], u.has(auWrite5m), u.v[auWrite1h], u.has(auWrite1h))
	if reason != "" {
		return "cache_creation", reason
	}
	if u.v[auThinking] > u.v[auOutput] {
		return "output_tokens_details.thinking_tokens", "thinking_tokens " + strconv.FormatInt(u.v[auThinking], 10) +
			" exceed output_tokens " + strconv.FormatInt(u.v[auOutput], 10)
	}
	q[UnitInput] += u.v[auInput]
	q[UnitCachedInput] += u.v[auCacheRead]
	q[UnitCacheWrite5m] += w5
	q[UnitCacheWrite1h] += w1h
	q[UnitOutput] += u.v[auOutput] - u.v[auThinking]
	q[UnitReasoning] += u.v[auThinking]
	q[UnitWebSearch] += u.v[auWebSearch]
	return "", ""
}

// fieldErr carries a nested field path out of a helper whose signature
// returns only an error.
type fieldErr struct {
	field string
	err   error
}

func (e *fieldErr) Error() string { return e.field + ": " + e.err.Error() }

func scanAnthropicDetailsField(s *scanner, u *anthropicUsage, obj string, seen *uint32) error {
	if sub, err := scanAnthropicDetails(s, u, obj, seen); err != nil {
		return &fieldErr{field: sub, err: err}
	}
	return nil
}
