package gateway

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestInjectIncludeUsage(t *testing.T) {
	f := func(in, want string) {
		t.Helper()
		r, err := parseRequest([]byte(in))
		if err != nil {
			t.Fatalf("parseRequest(%s): %v", in, err)
		}
		got := string(injectIncludeUsage(nil, []byte(in), &r))
		if got != want {
			t.Errorf("inject(%s)\n got %s\nwant %s", in, got, want)
		}
		if !json.Valid([]byte(got)) {
			t.Errorf("inject(%s) is not valid JSON: %s", in, got)
		}
		r2, err := parseRequest([]byte(got))
		if err != nil || !r2.includeUsage || r2.model != r.model || r2.stream != r.stream {
			t.Errorf("inject(%s) re-parsed: %+v %v", in, r2, err)
		}
	}
	f(`{"model":"m","stream":true}`, `{"model":"m","stream":true,"stream_options":{"include_usage":true}}`)
	f("{\n  \"model\": \"m\",\n  \"stream\": true\n}", "{\n  \"model\": \"m\",\n  \"stream\": true\n,\"stream_options\":{\"include_usage\":true}}")
	f(`{"model":"m","stream":true,"stream_options":null}`, `{"model":"m","stream":true,"stream_options":{"include_usage":true}}`)
	f(`{"stream_options":null,"model":"m","stream":true}`, `{"stream_options":{"include_usage":true},"model":"m","stream":true}`)
	f(`{"model":"m","stream":true,"stream_options":{}}`, `{"model":"m","stream":true,"stream_options":{"include_usage":true}}`)
	f(`{"model":"m","stream":true,"stream_options":{ }}`, `{"model":"m","stream":true,"stream_options":{"include_usage":true }}`)
	f(`{"model":"m","stream":true,"stream_options":{"include_obfuscation":false}}`,
		`{"model":"m","stream":true,"stream_options":{"include_usage":true,"include_obfuscation":false}}`)
	f(`{"model":"m","stream":true,"stream_options":{"include_usage":false}}`, `{"model":"m","stream":true,"stream_options":{"include_usage":true}}`)
	f(`{"model":"m","stream":true,"stream_options":{"a":1,"include_usage": null}}`, `{"model":"m","stream":true,"stream_options":{"a":1,"include_usage": true}}`)
}

func TestParseRequest(t *testing.T) {
	ok := func(in, model string, stream, includeUsage bool) {
		t.Helper()
		r, err := parseRequest([]byte(in))
		if err != nil || r.model != model || r.stream != stream || r.includeUsage != includeUsage {
			t.Errorf("parseRequest(%s) = %+v, %v; want model %q stream %v include_usage %v", in, r, err, model, stream, includeUsage)
		}
	}
	ok(`{"model":"gpt-4o"}`, "gpt-4o", false, false)
	ok(`{"messages":[{"content":"{\"model\":\"x\"}"}],"model":"gpt-4o","stream":false}`, "gpt-4o", false, false)
	ok(`{"model":"a\"b","stream":true,"stream_options":{"include_usage":true}}`, `a"b`, true, true)
	ok(`{"mod\u0065l":"gpt-4o","stream":null}`, "gpt-4o", false, false)
	ok(` { "model" : "x" , "nested" : {"model":"y","stream":true} } `, "x", false, false)
	bad := func(in, want string) {
		t.Helper()
		if _, err := parseRequest([]byte(in)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("parseRequest(%s) = %v, want an error with %q", in, err, want)
		}
	}
	bad(``, "expected a JSON object")
	bad(`[]`, "expected a JSON object")
	bad(`{"model":"x"`, "expected a JSON object")
	bad(`{"model":"x",}`, "expected a JSON object")
	bad(`{"messages":[]}`, "missing model")
	bad(`{"model":""}`, "non-empty string")
	bad(`{"model":3}`, "non-empty string")
	bad(`{"model":"a","model":"b"}`, `duplicate key "model"`)
	bad(`{"model":"a","mod\u0065l":"b"}`, `duplicate key "model"`)
	bad(`{"model":"a","stream":1}`, "stream: expected true or false")
	bad(`{"model":"a","stream_options":[]}`, "stream_options: expected an object")
	bad(`{"model":"a","stream_options":{"include_usage":true,"include_usage":false}}`, "duplicate key")
}

// FuzzParseRequest: no input makes the scanner panic, and injecting
// include_usage into a valid body always yields a valid body that asks
// for usage and names the same model.
func FuzzParseRequest(f *testing.F) {
	for _, s := range []string{
		`{"model":"m","stream":true}`, `{"model":"m","stream":true,"stream_options":{"include_usage":false,"x":[1,{"y":"}"}]}}`,
		`{"model":"m","stream":true,"stream_options":null}`, `{"mod\u0065l":"m","stream":true,"stream_options":{}}`,
		"{\"model\":\"\\u00e9\",\"stream\":true,\"messages\":[{\"role\":\"user\",\"content\":\"\\\"usage\\\"\"}]}",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := parseRequest(b)
		var v [3][]byte
		_ = fields(b, []string{"id", "usage", "model"}, v[:])
		if err != nil || !json.Valid(b) {
			return
		}
		out := injectIncludeUsage(nil, b, &r)
		if !json.Valid(out) {
			t.Fatalf("inject(%s) = %s: invalid JSON", b, out)
		}
		r2, err := parseRequest(out)
		if err != nil || !r2.includeUsage || r2.model != r.model || r2.stream != r.stream {
			t.Fatalf("inject(%s) = %s re-parsed as %+v, %v", b, out, r2, err)
		}
		var m map[string]json.RawMessage
		if json.Unmarshal(out, &m) == nil {
			var so struct {
				IncludeUsage bool `json:"include_usage"`
			}
			if json.Unmarshal(m["stream_options"], &so) != nil || !so.IncludeUsage {
				t.Fatalf("inject(%s) = %s: encoding/json does not see include_usage", b, out)
			}
		}
	})
}

func TestUsageFromBody(t *testing.T) {
	var u usage
	body := `{"id":"chatcmpl-1","object":"chat.completion","model":"gpt-4o-2024-08-06","choices":[{"message":{"content":"the \"usage\": {fake}"}}],` +
		`"usage":{"prompt_tokens":10,"completion_tokens":5},"service_tier":"default"}`
	if !u.fromBody(apiChat, []byte(body)) || u.kind != usageOpenAI || u.id != "chatcmpl-1" || u.model != "gpt-4o-2024-08-06" ||
		string(u.raw) != `{"prompt_tokens":10,"completion_tokens":5}` || u.tier != "default" {
		t.Fatalf("%+v", u)
	}
	u.reset()
	if u.fromBody(apiChat, []byte(`{"error":{"message":"x"}}`)) || !u.failed {
		t.Fatalf("an error body has no usage: %+v", u)
	}
	u.reset()
	// A tier tariff does not know is dropped, not passed on to be refused.
	u.fromBody(apiResponses, []byte(`{"id":"r","usage":{"input_tokens":1,"output_tokens":1},"service_tier":"turbo"}`))
	if u.tier != "" || u.kind != usageResponses {
		t.Fatalf("%+v", u)
	}
}
