package gateway

import (
	"net/http"
	"strconv"

	"github.com/tariff-dev/tariff/schemas"
)

// api is one of the caller-side APIs the gateway speaks.
type api uint8

const (
	apiChat      api = iota // OpenAI Chat Completions
	apiResponses            // OpenAI Responses
	apiMessages             // Anthropic Messages

	numAPIs
)

var (
	apiNames = [numAPIs]string{"chat_completions", "responses", "messages"}
	// apiPaths are the caller-side paths.
	apiPaths = [numAPIs]string{"/v1/chat/completions", "/v1/responses", "/v1/messages"}
	// apiSuffix is appended to an upstream's base URL.
	apiSuffix = [numAPIs]string{"/chat/completions", "/responses", "/messages"}
)

func (a api) String() string { return apiNames[a] }

func parseAPI(s string) (api, bool) {
	for i, n := range apiNames {
		if n == s {
			return api(i), true
		}
	}
	return 0, false
}

// anthropicFormat reports whether errors on this API use Anthropic's shape.
func (a api) anthropicFormat() bool { return a == apiMessages }

// errKind is a refusal by the gateway itself, rendered in the caller's
// API's own error format.
type errKind uint8

const (
	errBadRequest  errKind = iota // 400
	errAuth                       // 401
	errPaused                     // 402
	errNotFound                   // 404: no upstream for the model
	errMethod                     // 405
	errTooLarge                   // 413
	errInternal                   // 500
	errUpstream                   // 502: upstream unreachable or broken
	errUnavailable                // 503: entitlement service down, fail-closed
	errTimeout                    // 504: upstream did not answer in time
)

// errFormat is how one errKind looks in each API.
type errFormat struct {
	status        int
	openAIType    string
	openAICode    string // "" renders null
	anthropicType string
}

// Types follow each provider's documented error types: OpenAI's
// invalid_request_error / insufficient_quota / server_error, Anthropic's
// invalid_request_error / authentication_error / billing_error /
// not_found_error / request_too_large / api_error / overloaded_error.
var errFormats = [...]errFormat{
	errBadRequest:  {http.StatusBadRequest, "invalid_request_error", "", "invalid_request_error"},
	errAuth:        {http.StatusUnauthorized, "invalid_request_error", "invalid_api_key", "authentication_error"},
	errPaused:      {http.StatusPaymentRequired, "insufficient_quota", "insufficient_quota", "billing_error"},
	errNotFound:    {http.StatusNotFound, "invalid_request_error", "model_not_found", "not_found_error"},
	errMethod:      {http.StatusMethodNotAllowed, "invalid_request_error", "method_not_allowed", "invalid_request_error"},
	errTooLarge:    {http.StatusRequestEntityTooLarge, "invalid_request_error", "request_too_large", "request_too_large"},
	errInternal:    {http.StatusInternalServerError, "server_error", "", "api_error"},
	errUpstream:    {http.StatusBadGateway, "server_error", "upstream_unavailable", "api_error"},
	errUnavailable: {http.StatusServiceUnavailable, "server_error", "entitlement_unavailable", "overloaded_error"},
	errTimeout:     {http.StatusGatewayTimeout, "server_error", "upstream_timeout", "api_error"},
}

// refusal is the gateway's own answer to a request it does not forward.
type refusal struct {
	kind errKind
	msg  string
}

// appendError renders a refusal: OpenAI
// {"error":{"message":...,"type":...,"param":null,"code":...}} or Anthropic
// {"type":"error","error":{"type":...,"message":...}}.
func appendError(b []byte, a api, kind errKind, msg string) []byte {
	f := &errFormats[kind]
	if a.anthropicFormat() {
		b = append(b, `{"type":"error","error":{"type":`...)
		b = appendString(b, f.anthropicType)
		b = append(b, `,"message":`...)
		b = appendString(b, msg)
		return append(b, "}}\n"...)
	}
	b = append(b, `{"error":{"message":`...)
	b = appendString(b, msg)
	b = append(b, `,"type":`...)
	b = appendString(b, f.openAIType)
	b = append(b, `,"param":null,"code":`...)
	if f.openAICode == "" {
		b = append(b, "null"...)
	} else {
		b = appendString(b, f.openAICode)
	}
	return append(b, "}}\n"...)
}

func writeRefusal(w http.ResponseWriter, a api, r *refusal) int {
	f := &errFormats[r.kind]
	var buf [512]byte
	body := appendError(buf[:0], a, r.kind, r.msg)
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	switch r.kind {
	case errAuth:
		h.Set("WWW-Authenticate", `Bearer realm="tariff-gateway"`)
	case errMethod:
		h.Set("Allow", http.MethodPost)
	case errUnavailable:
		h.Set("Retry-After", "1")
	}
	w.WriteHeader(f.status)
	_, _ = w.Write(body)
	return f.status
}

const hexDigits = "0123456789abcdef"

// appendString appends s as a JSON string (schemas.AppendJSONString).
func appendString(b []byte, s string) []byte { return schemas.AppendJSONString(b, s) }
