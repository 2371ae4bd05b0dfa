package gateway

import "testing"

func TestRouter(t *testing.T) {
	ups := map[string]*upstream{}
	for _, u := range []struct {
		name string
		apis []api
	}{
		{"openai", []api{apiChat, apiResponses}},
		{"anthropic", []api{apiMessages}},
		{"openrouter", []api{apiChat, apiResponses}},
		{"vllm", []api{apiChat}},
	} {
		up := &upstream{cfg: Upstream{Name: u.name}}
		for _, a := range u.apis {
			up.apis[a] = true
		}
		ups[u.name] = up
	}
	rt := newRouter([]Route{
		{Prefix: "claude-", Upstream: "anthropic"},
		{Prefix: "claude-", Upstream: "openrouter"}, // same prefix: the chat API of claude-* goes here
		{Prefix: "gpt-", Upstream: "openai"},
		{Prefix: "gpt-4o-mini", Upstream: "vllm"}, // longer prefix wins
		{Model: "gpt-4o-mini-2024-07-18", Upstream: "openai"},
		{Model: "llama-3", Upstream: "vllm"},
	}, ups, "openrouter")
	f := func(model string, a api, want string) {
		t.Helper()
		got := ""
		if u := rt.route(model, a); u != nil {
			got = u.cfg.Name
		}
		if got != want {
			t.Errorf("route(%q, %s) = %q, want %q", model, a, got, want)
		}
	}
	f("claude-sonnet-4-5", apiMessages, "anthropic")
	f("claude-sonnet-4-5", apiChat, "openrouter")
	f("gpt-4o", apiChat, "openai")
	f("gpt-4o", apiResponses, "openai")
	f("gpt-4o", apiMessages, "")
	f("gpt-4o-mini", apiChat, "vllm")
	f("gpt-4o-mini", apiResponses, "openai") // vllm does not speak Responses: next match
	f("gpt-4o-mini-2024-07-18", apiChat, "openai")
	f("llama-3", apiChat, "vllm")
	f("mistral-large", apiChat, "openrouter")
	f("mistral-large", apiMessages, "")

	none := newRouter(nil, ups, "")
	if u := none.route("gpt-4o", apiChat); u != nil {
		t.Errorf("no routes and no default routed to %s", u.cfg.Name)
	}
}
