package schemas

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"regexp"
	"sort"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

var updateGrafana = flag.Bool("update-grafana", false, "rewrite the SQL of grafana/dashboards/tariff.json from queries/")

const grafanaDashboard = "grafana/dashboards/tariff.json"

// panelSubstitutions turn a documented query into its panel's query: the
// example dates become the dashboard's time range, the example customer
// its customer variable. Nothing else may differ.
var panelSubstitutions = []struct{ doc, panel string }{
	{"day >= toDate('2026-11-01') AND day < toDate('2026-12-01')", "$__dateFilter(day)"},
	{"event_date >= toDate('2026-11-01') AND event_date < toDate('2026-12-01')", "$__dateFilter(event_date)"},
	{"toDate('2026-11-20')", "toDate($__toTime)"},
	{"customer_id = 'acme'", "customer_id = '${customer}'"},
}

func panelSQL(doc string) string {
	for _, s := range panelSubstitutions {
		doc = strings.ReplaceAll(doc, s.doc, s.panel)
	}
	return doc
}

// TestGrafanaDashboard: every documented analyst query is a panel of the
// Grafana dashboard, running exactly that SQL with the dashboard's time
// range in place of the example dates, against the provisioned data
// source. (The end-to-end test runs the documented queries on the real
// server; this test ties the panels to them.)
func TestGrafanaDashboard(t *testing.T) {
	data, err := os.ReadFile(grafanaDashboard)
	if err != nil {
		t.Fatal(err)
	}
	var dash map[string]any
	if err := json.Unmarshal(data, &dash); err != nil {
		t.Fatalf("%s: %v", grafanaDashboard, err)
	}
	queries, err := AnalystQueries()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{}
	for _, q := range queries {
		want[q.Name] = panelSQL(q.SQL)
	}
	literal := regexp.MustCompile(`'20\d\d-\d\d-\d\d'|'acme'`)
	seen := map[string]bool{}
	for _, p := range dash["panels"].([]any) {
		panel := p.(map[string]any)
		title := panel["title"].(string)
		if ds := panel["datasource"].(map[string]any); ds["uid"] != "tariff-clickhouse" || ds["type"] != "grafana-clickhouse-datasource" {
			t.Errorf("panel %q: data source %v, want the provisioned tariff-clickhouse", title, ds)
		}
		for _, tg := range panel["targets"].([]any) {
			target := tg.(map[string]any)
			name := target["refId"].(string)
			sql, ok := want[name]
			if !ok {
				t.Errorf("panel %q: refId %q is not a documented query in queries/", title, name)
				continue
			}
			seen[name] = true
			if *updateGrafana {
				target["rawSql"] = sql
			}
			if got := target["rawSql"]; got != sql {
				t.Errorf("panel %q runs\n%s\nwant the documented query %s.sql with the dashboard's range:\n%s\n(go test ./schemas -run TestGrafanaDashboard -update-grafana rewrites it)", title, got, name, sql)
			}
			if literal.MatchString(sql) {
				t.Errorf("panel %q: the query keeps an example date or customer: %s", title, literal.FindString(sql))
			}
		}
	}
	var missing []string
	for name := range want {
		if !seen[name] {
			missing = append(missing, name)
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Errorf("documented queries without a panel in %s: %v", grafanaDashboard, missing)
	}
	if *updateGrafana {
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		enc.SetEscapeHTML(false)
		enc.SetIndent("", "  ")
		if err := enc.Encode(dash); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(grafanaDashboard, buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// TestGrafanaProvisioning reads the provisioning files and the compose
// file (there is no Docker engine to start them here): the data source
// the dashboard uses is provisioned with the ClickHouse plugin, the
// dashboards folder is loaded, and docker-compose.yml mounts both and
// installs the plugin.
func TestGrafanaProvisioning(t *testing.T) {
	var ds struct {
		APIVersion  int `yaml:"apiVersion"`
		Datasources []struct {
			Type     string            `yaml:"type"`
			UID      string            `yaml:"uid"`
			JSONData map[string]any    `yaml:"jsonData"`
			Secure   map[string]string `yaml:"secureJsonData"`
		} `yaml:"datasources"`
	}
	readYAML(t, "grafana/provisioning/datasources/clickhouse.yaml", &ds)
	if ds.APIVersion != 1 || len(ds.Datasources) != 1 {
		t.Fatalf("datasources: %+v", ds)
	}
	d := ds.Datasources[0]
	if d.Type != "grafana-clickhouse-datasource" || d.UID != "tariff-clickhouse" || d.JSONData["protocol"] != "native" ||
		d.JSONData["defaultDatabase"] == nil || d.Secure["password"] == "" {
		t.Errorf("the ClickHouse data source is not provisioned as the dashboard expects: %+v", d)
	}
	var dp struct {
		Providers []struct {
			Type    string `yaml:"type"`
			Options struct {
				Path string `yaml:"path"`
			} `yaml:"options"`
		} `yaml:"providers"`
	}
	readYAML(t, "grafana/provisioning/dashboards/tariff.yaml", &dp)
	if len(dp.Providers) != 1 || dp.Providers[0].Type != "file" || dp.Providers[0].Options.Path == "" {
		t.Fatalf("dashboard provider: %+v", dp)
	}
	var compose struct {
		Services map[string]struct {
			Image       string            `yaml:"image"`
			Environment map[string]string `yaml:"environment"`
			Volumes     []string          `yaml:"volumes"`
			DependsOn   map[string]any    `yaml:"depends_on"`
		} `yaml:"services"`
	}
	readYAML(t, "../docker-compose.yml", &compose)
	g, ok := compose.Services["grafana"]
	if !ok {
		t.Fatal("docker-compose.yml has no grafana service")
	}
	if !strings.Contains(g.Environment["GF_PLUGINS_PREINSTALL"], "grafana-clickhouse-datasource") {
		t.Errorf("grafana does not install the ClickHouse plugin: %v", g.Environment)
	}
	mounts := strings.Join(g.Volumes, "\n")
	for _, m := range []string{"./schemas/grafana/provisioning:/etc/grafana/provisioning", "./schemas/grafana/dashboards:" + dp.Providers[0].Options.Path} {
		if !strings.Contains(mounts, m) {
			t.Errorf("grafana does not mount %s (volumes %v)", m, g.Volumes)
		}
	}
	if _, ok := g.DependsOn["clickhouse"]; !ok {
		t.Error("grafana does not wait for clickhouse")
	}
	for _, v := range []string{"TARIFF_CLICKHOUSE_HOST", "TARIFF_CLICKHOUSE_USERNAME", "TARIFF_CLICKHOUSE_DATABASE", "TARIFF_CLICKHOUSE_PASSWORD"} {
		if _, ok := g.Environment[v]; !ok {
			t.Errorf("grafana's environment lacks %s, which the data source reads", v)
		}
	}
}

func readYAML(t *testing.T, path string, v any) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(data, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}
