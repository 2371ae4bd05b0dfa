// Package gatewaytest is a stand-in for the LLM providers the gateway
// forwards to: one HTTP server speaking the OpenAI Chat Completions and
// Responses APIs and the Anthropic Messages API, streamed and not, with the
// wire shapes of the providers' own responses (schemas/testdata and
// /work/shared/data/payloads: openai_usage.json,
// openai_responses_usage.json, anthropic_usage.json,
// anthropic_stream_usage_events.json). Every response it sends is logged
// with the usage it reported, so a test can assert that exactly those
// tokens were billed.
package gatewaytest

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"

	"github.com/tariff-dev/tariff/schemas"
)

// API names, as the gateway names them.
const (
	APIChat      = "chat_completions"
	APIResponses = "responses"
	APIMessages  = "messages"
)

// Usage is what the stand-in reports for one response, in each provider's
// own convention.
type Usage struct {
	// OpenAI (Chat Completions and Responses): inclusive counts. Prompt
	// includes Cached; Completion includes Reasoning.
	Prompt, Cached, Completion, Reasoning int64
	// Anthropic: Input excludes cache writes and reads; Output includes
	// Thinking, which is reported (output_tokens_details) only when the
	// response is not streamed.
	Input, CacheWrite, CacheRead, Output, Thinking int64
}

// Report is one response the stand-in sent.
type Report struct {
	API    string
	ID     string
	Model  string // as the response names it
	Stream bool
	Usage  Usage
	// Complete: the final usage was sent (false for a stream cut short,
	// which reported only message_start's usage, or none).
	Complete bool
	// StartOnly: an Anthropic stream cut short after message_start.
	StartOnly bool
}

// Expected returns the exclusive quantities tariff must bill for the
// report, computed independently of the schemas decoders from each
// provider's documented convention (schemas/README.md). requests is not
// included.
func (r Report) Expected() [schemas.NumUnits]int64 {
	var q [schemas.NumUnits]int64
	u := r.Usage
	switch r.API {
	case APIChat, APIResponses:
		if !r.Complete {
			return q
		}
		q[schemas.UnitInput] = u.Prompt - u.Cached
		q[schemas.UnitCachedInput] = u.Cached
		q[schemas.UnitOutput] = u.Completion - u.Reasoning
		q[schemas.UnitReasoning] = u.Reasoning
	case APIMessages:
		q[schemas.UnitInput] = u.Input
		q[schemas.UnitCacheWrite5m] = u.CacheWrite
		q[schemas.UnitCachedInput] = u.CacheRead
		switch {
		case r.StartOnly:
			q[schemas.UnitOutput] = 1 // message_start's output_tokens
		case r.Stream:
			q[schemas.UnitOutput] = u.Output // no thinking breakdown in a stream
		default:
			q[schemas.UnitOutput] = u.Output - u.Thinking
			q[schemas.UnitReasoning] = u.Thinking
		}
	}
	return q
}

// Request is one request the stand-in received.
type Request struct {
	Path   string
	Header http.Header
	Body   []byte
}

// Upstream is the stand-in server. Set its fields before the first request.
type Upstream struct {
	*httptest.Server
	// Key is the upstream key the gateway must send: "Authorization:
	// Bearer <Key>" on the OpenAI APIs, "x-api-key: <Key>" on Messages.
	Key string
	// Chunks is the number of text deltas per stream. Default 3.
	Chunks int
	// Hold, when set, is received from after a stream's first text delta
	// and before the rest: a test proves the caller got that delta while
	// the upstream had not yet sent the last event.
	Hold chan struct{}
	// Block makes streams stop after their first text delta and wait until
	// the request is cancelled (a caller who hangs up mid-stream).
	Block bool
	// UsageFor returns the usage of the seq-th response (1-based). Default:
	// distinct numbers per response (DefaultUsage).
	UsageFor func(api string, seq int) Usage
	// ModelFor maps a requested model to the one the response names.
	// Default: dated snapshots for a few known models, else the same.
	ModelFor func(requested string) string

	mu      sync.Mutex
	seq     int
	reports []Report
	reqs    []Request
}

// New starts a stand-in upstream that requires key.
func New(key string) *Upstream {
	u := &Upstream{Key: key}
	u.Server = httptest.NewServer(u)
	return u
}

// BaseURL is the base URL to configure the gateway's upstream with.
func (u *Upstream) BaseURL() string { return u.URL + "/v1" }

// Reports returns the responses sent so far.
func (u *Upstream) Reports() []Report {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]Report(nil), u.reports...)
}

// Requests returns the requests received so far.
func (u *Upstream) Requests() []Request {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]Request(nil), u.reqs...)
}

// DefaultUsage gives every response distinct counts, so that a swapped or
// doubled event shows in the totals.
func DefaultUsage(api string, seq int) Usage {
	n := int64(seq)
	switch api {
	case APIChat:
		return Usage{Prompt: 1000 + 13*n, Cached: 256 * (n % 3), Completion: 100 + 7*n}
	case APIResponses:
		return Usage{Prompt: 2000 + 11*n, Cached: 1024, Completion: 300 + 5*n, Reasoning: 128}
	}
	return Usage{Input: 1200 + n, CacheWrite: 2000, CacheRead: 8000, Output: 450 + n, Thinking: 120}
}

var snapshots = map[string]string{
	"gpt-4o":            "gpt-4o-2024-08-06",
	"gpt-5":             "gpt-5-2025-08-07",
	"claude-sonnet-4-5": "claude-sonnet-4-5-20250929",
}

type request struct {
	Model         string `json:"model"`
	Stream        bool   `json:"stream"`
	StreamOptions *struct {
		IncludeUsage bool `json:"include_usage"`
	} `json:"stream_options"`
}

// ServeHTTP implements the three APIs.
func (u *Upstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var api string
	switch r.URL.Path {
	case "/v1/chat/completions":
		api = APIChat
	case "/v1/responses":
		api = APIResponses
	case "/v1/messages":
		api = APIMessages
	default:
		http.Error(w, "not found", http.StatusNotFound)
		return
	}
	body, _ := io.ReadAll(r.Body)
	u.mu.Lock()
	u.reqs = append(u.reqs, Request{Path: r.URL.Path, Header: r.Header.Clone(), Body: body})
	u.mu.Unlock()
	if !u.authorized(api, r) {
		writeError(w, api, http.StatusUnauthorized, "invalid upstream key")
		return
	}
	var req request
	if err := json.Unmarshal(body, &req); err != nil || req.Model == "" {
		writeError(w, api, http.StatusBadRequest, "malformed request")
		return
	}
	if req.Model == "fail-500" {
		writeError(w, api, http.StatusInternalServerError, "the stand-in fails as asked")
		return
	}
	u.mu.Lock()
	u.seq++
	seq := u.seq
	u.mu.Unlock()
	usageFor, modelFor := u.UsageFor, u.ModelFor
	if usageFor == nil {
		usageFor = DefaultUsage
	}
	model := req.Model
	if modelFor != nil {
		model = modelFor(model)
	} else if m, ok := snapshots[model]; ok {
		model = m
	}
	rep := Report{API: api, Model: model, Stream: req.Stream, Usage: usageFor(api, seq)}
	switch api {
	case APIChat:
		rep.ID = fmt.Sprintf("chatcmpl-standin%06d", seq)
	case APIResponses:
		rep.ID = fmt.Sprintf("resp_standin%06d", seq)
	default:
		rep.ID = fmt.Sprintf("msg_standin%06d", seq)
	}
	if !req.Stream {
		rep.Complete = true
		u.log(rep)
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-Request-Id", "req_"+rep.ID)
		_, _ = io.WriteString(w, nonStream(rep))
		return
	}
	includeUsage := req.StreamOptions != nil && req.StreamOptions.IncludeUsage
	u.stream(w, r, &rep, includeUsage)
}

func (u *Upstream) log(rep Report) {
	u.mu.Lock()
	u.reports = append(u.reports, rep)
	u.mu.Unlock()
}

func (u *Upstream) authorized(api string, r *http.Request) bool {
	if api == APIMessages {
		return r.Header.Get("x-api-key") == u.Key && r.Header.Get("anthropic-version") != "" && r.Header.Get("Authorization") == ""
	}
	return r.Header.Get("Authorization") == "Bearer "+u.Key && r.Header.Get("x-api-key") == ""
}

func writeError(w http.ResponseWriter, api string, status int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	if api == APIMessages {
		fmt.Fprintf(w, `{"type":"error","error":{"type":"api_error","message":%q}}`, msg)
		return
	}
	fmt.Fprintf(w, `{"error":{"message":%q,"type":"server_error","param":null,"code":null}}`, msg)
}

func chatUsage(u Usage) string {
	return fmt.Sprintf(`{"prompt_tokens":%d,"completion_tokens":%d,"total_tokens":%d,"prompt_tokens_details":{"cached_tokens":%d,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":%d,"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}}`,
		u.Prompt, u.Completion, u.Prompt+u.Completion, u.Cached, u.Reasoning)
}

func responsesUsage(u Usage) string {
	return fmt.Sprintf(`{"input_tokens":%d,"input_tokens_details":{"cached_tokens":%d},"output_tokens":%d,"output_tokens_details":{"reasoning_tokens":%d},"total_tokens":%d}`,
		u.Prompt, u.Cached, u.Completion, u.Reasoning, u.Prompt+u.Completion)
}

func anthropicUsage(u Usage, thinking bool) string {
	s := fmt.Sprintf(`{"input_tokens":%d,"cache_creation_input_tokens":%d,"cache_read_input_tokens":%d,"cache_creation":{"ephemeral_5m_input_tokens":%d,"ephemeral_1h_input_tokens":0},"output_tokens":%d`,
		u.Input, u.CacheWrite, u.CacheRead, u.CacheWrite, u.Output)
	if thinking {
		s += fmt.Sprintf(`,"output_tokens_details":{"thinking_tokens":%d}`, u.Thinking)
	}
	return s + `,"service_tier":"standard"}`
}

func responseObject(rep *Report, status, usage string) string {
	output := `[]`
	if status == "completed" {
		output = `[{"type":"message","id":"msg_` + rep.ID + `","status":"completed","role":"assistant","content":[{"type":"output_text","text":"Here is the summary ...","annotations":[]}]}]`
	}
	return fmt.Sprintf(`{"id":%q,"object":"response","created_at":1771718400,"status":%q,"model":%q,"output":%s,"service_tier":"default","usage":%s}`,
		rep.ID, status, rep.Model, output, usage)
}

func nonStream(rep Report) string {
	switch rep.API {
	case APIChat:
		return fmt.Sprintf(`{"id":%q,"object":"chat.completion","created":1771718400,"model":%q,"choices":[{"index":0,"message":{"role":"assistant","content":"Here is the summary ...","refusal":null,"annotations":[]},"logprobs":null,"finish_reason":"stop"}],"usage":%s,"service_tier":"default","system_fingerprint":null}`,
			rep.ID, rep.Model, chatUsage(rep.Usage))
	case APIResponses:
		return responseObject(&rep, "completed", responsesUsage(rep.Usage))
	}
	return fmt.Sprintf(`{"id":%q,"type":"message","role":"assistant","model":%q,"content":[{"type":"thinking","thinking":"...","signature":"EqQBCkYIBxgCKkB..."},{"type":"text","text":"1. ... 2. ... 3. ..."}],"stop_reason":"end_turn","stop_sequence":null,"usage":%s}`,
		rep.ID, rep.Model, anthropicUsage(rep.Usage, true))
}

// stream sends rep as server-sent events, flushing each.
func (u *Upstream) stream(w http.ResponseWriter, r *http.Request, rep *Report, includeUsage bool) {
	h := w.Header()
	h.Set("Content-Type", "text/event-stream; charset=utf-8")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Request-Id", "req_"+rep.ID)
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	send := func(event, data string) bool {
		var b strings.Builder
		if event != "" {
			b.WriteString("event: " + event + "\n")
		}
		b.WriteString("data: " + data + "\n\n")
		if _, err := io.WriteString(w, b.String()); err != nil {
			return false
		}
		return rc.Flush() == nil
	}
	chunks := u.Chunks
	if chunks <= 0 {
		chunks = 3
	}
	words := []string{"Here", " is", " the", " summary", " ..."}
	// pause runs after the first text delta: hold or block as asked. It
	// returns false when the stream must end here (the caller left).
	pause := func() bool {
		if u.Block {
			<-r.Context().Done()
			return false
		}
		if u.Hold != nil {
			select {
			case <-u.Hold:
			case <-r.Context().Done():
				return false
			}
		}
		return true
	}
	switch rep.API {
	case APIChat:
		usageNull := ""
		if includeUsage {
			usageNull = `,"usage":null`
		}
		chunk := func(delta, finish string) string {
			return fmt.Sprintf(`{"id":%q,"object":"chat.completion.chunk","created":1771718400,"model":%q,"service_tier":"default","system_fingerprint":null,"choices":[{"index":0,"delta":%s,"logprobs":null,"finish_reason":%s}]%s}`,
				rep.ID, rep.Model, delta, finish, usageNull)
		}
		if !send("", chunk(`{"role":"assistant","content":"","refusal":null}`, "null")) {
			u.log(*rep)
			return
		}
		for i := 0; i < chunks; i++ {
			if !send("", chunk(fmt.Sprintf(`{"content":%q}`, words[i%len(words)]), "null")) {
				u.log(*rep)
				return
			}
			if i == 0 && !pause() {
				u.log(*rep)
				return
			}
		}
		send("", chunk(`{}`, `"stop"`))
		if includeUsage {
			rep.Complete = true
			send("", fmt.Sprintf(`{"id":%q,"object":"chat.completion.chunk","created":1771718400,"model":%q,"service_tier":"default","system_fingerprint":null,"choices":[],"usage":%s}`,
				rep.ID, rep.Model, chatUsage(rep.Usage)))
		}
		u.log(*rep)
		send("", "[DONE]")
	case APIResponses:
		seq := 0
		ev := func(typ, rest string) bool {
			seq++
			return send(typ, fmt.Sprintf(`{"type":%q,"sequence_number":%d,%s}`, typ, seq-1, rest))
		}
		if !ev("response.created", `"response":`+responseObject(rep, "in_progress", "null")) {
			u.log(*rep)
			return
		}
		for i := 0; i < chunks; i++ {
			if !ev("response.output_text.delta", fmt.Sprintf(`"item_id":"msg_%s","output_index":0,"content_index":0,"delta":%q`, rep.ID, words[i%len(words)])) {
				u.log(*rep)
				return
			}
			if i == 0 && !pause() {
				u.log(*rep)
				return
			}
		}
		rep.Complete = true
		u.log(*rep)
		ev("response.completed", `"response":`+responseObject(rep, "completed", responsesUsage(rep.Usage)))
	case APIMessages:
		start := Usage{Input: rep.Usage.Input, CacheWrite: rep.Usage.CacheWrite, CacheRead: rep.Usage.CacheRead, Output: 1}
		if !send("message_start", fmt.Sprintf(`{"type":"message_start","message":{"id":%q,"type":"message","role":"assistant","model":%q,"content":[],"stop_reason":null,"stop_sequence":null,"usage":%s}}`,
			rep.ID, rep.Model, anthropicUsage(start, false))) {
			u.log(*rep)
			return
		}
		rep.StartOnly = true
		send("content_block_start", `{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}`)
		send("ping", `{"type": "ping"}`)
		for i := 0; i < chunks; i++ {
			if !send("content_block_delta", fmt.Sprintf(`{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":%q}}`, words[i%len(words)])) {
				u.log(*rep)
				return
			}
			if i == 0 && !pause() {
				u.log(*rep)
				return
			}
		}
		send("content_block_stop", `{"type":"content_block_stop","index":0}`)
		rep.StartOnly, rep.Complete = false, true
		u.log(*rep)
		send("message_delta", fmt.Sprintf(`{"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"input_tokens":%d,"cache_creation_input_tokens":%d,"cache_read_input_tokens":%d,"output_tokens":%d}}`,
			rep.Usage.Input, rep.Usage.CacheWrite, rep.Usage.CacheRead, rep.Usage.Output))
		send("message_stop", `{"type":"message_stop"}`)
	}
}
