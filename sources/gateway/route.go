package gateway

import (
	"net/http"
	"sort"
	"strings"
)

// upstream is one configured provider endpoint, ready to use.
type upstream struct {
	cfg  Upstream
	apis [numAPIs]bool
	// url per API: base URL + the API's path, "" when not served.
	url [numAPIs]string
	// auth header value per API ("Bearer <key>" or the bare key), nil
	// without a key. Kept as a header slice so it is never formatted or
	// logged.
	bearer []string
	apiKey []string
	// headers are the static extra headers, canonicalized.
	headers   http.Header
	uniqueIDs bool
}

func (u *upstream) serves(a api) bool { return u.apis[a] }

// router maps a model and a caller API to an upstream. Read-only after New.
type router struct {
	exact    map[string][]*upstream
	prefixes []prefixRoute
	def      *upstream
}

type prefixRoute struct {
	prefix string
	up     *upstream
}

func newRouter(routes []Route, byName map[string]*upstream, def string) *router {
	rt := &router{exact: map[string][]*upstream{}}
	for _, r := range routes {
		up := byName[r.Upstream]
		if r.Model != "" {
			rt.exact[r.Model] = append(rt.exact[r.Model], up)
		} else {
			rt.prefixes = append(rt.prefixes, prefixRoute{r.Prefix, up})
		}
	}
	// Longest prefix first; among equal lengths, configuration order.
	sort.SliceStable(rt.prefixes, func(i, j int) bool { return len(rt.prefixes[i].prefix) > len(rt.prefixes[j].prefix) })
	if def != "" {
		rt.def = byName[def]
	}
	return rt
}

// route returns the upstream for model on API a: the first exact route,
// else the longest matching prefix, else the default, whose upstream
// serves a. nil when none does.
func (rt *router) route(model string, a api) *upstream {
	for _, u := range rt.exact[model] {
		if u.serves(a) {
			return u
		}
	}
	for i := range rt.prefixes {
		p := &rt.prefixes[i]
		if strings.HasPrefix(model, p.prefix) && p.up.serves(a) {
			return p.up
		}
	}
	if rt.def != nil && rt.def.serves(a) {
		return rt.def
	}
	return nil
}
