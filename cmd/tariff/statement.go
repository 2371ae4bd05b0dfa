package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/shopspring/decimal"

	"github.com/tariff-dev/tariff/pipeline/ops"
)

func cmdStatement(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("statement", `Show a customer's statement for a billing period, from a running tariff's
admin API (GET /v1/customers/{id}/statement): fixed fees, included usage,
credits drawn per grant, overage and the amount due, each rounded once,
half-even, to cents from its exact value. The exact usage charge is shown
beside it: it equals ClickHouse's sum(charge) for the customer over the
period (rated_lines FINAL), except for late events, shown apart.

The token is read like tariff run reads it (ops.admin_token, default the
TARIFF_ADMIN_TOKEN environment variable).`, "", stderr)
	configPath := fs.String("config", "", "YAML configuration file (for ops.listen and ops.admin_token)")
	customer := fs.String("customer", "", "customer id (required)")
	period := fs.String("period", "current", "current, last, all, a month such as 2026-11, or a period's start time (RFC 3339)")
	base := fs.String("url", "", "admin API address (default http://<ops.listen>)")
	asJSON := fs.Bool("json", false, "print the API's JSON instead of a table")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if *customer == "" {
		fmt.Fprintln(stderr, "tariff statement: --customer is required")
		return errUsage
	}
	cfg, _, err := commandConfig(*configPath, stderr)
	if err != nil {
		return err
	}
	if *base == "" {
		if cfg.Ops.Listen == ops.Off {
			return fmt.Errorf("ops.listen is off: no admin API to ask; give --url")
		}
		*base = "http://" + cfg.Ops.Listen
	}
	token, err := cfg.Ops.AdminToken.Load()
	if err != nil {
		return err
	}
	if token == "" {
		return fmt.Errorf("no admin token: set %s (or ops.admin_token) to the token tariff run uses", cfg.Ops.AdminToken)
	}
	u := strings.TrimSuffix(*base, "/") + "/v1/customers/" + url.PathEscape(*customer) + "/statement?period=" + url.QueryEscape(*period)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return fmt.Errorf("--url %q: %w", *base, err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("admin API at %s: %w (is tariff run running there?)", *base, err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(io.LimitReader(res.Body, 16<<20))
	if err != nil {
		return fmt.Errorf("admin API at %s: %w", *base, err)
	}
	if res.StatusCode != http.StatusOK {
		var e struct{ Error string }
		if json.Unmarshal(body, &e) == nil && e.Error != "" {
			return fmt.Errorf("%s", e.Error)
		}
		return fmt.Errorf("admin API at %s: %s", *base, res.Status)
	}
	if *asJSON {
		_, err := stdout.Write(body)
		return err
	}
	var v ops.StatementsView
	if err := json.Unmarshal(body, &v); err != nil {
		return fmt.Errorf("admin API answer: %w", err)
	}
	for i := range v.Statements {
		if i > 0 {
			fmt.Fprintln(stdout)
		}
		printStatement(stdout, &v.Statements[i])
	}
	return nil
}

func money(d decimal.Decimal) string { return d.StringFixed(2) }

// printStatement writes one period as a table a person reads.
func printStatement(w io.Writer, s *ops.StatementView) {
	state := "closed"
	if s.Open {
		state = "open: amounts can still grow"
	}
	fmt.Fprintf(w, "Statement of %s, %s to %s (%s), %s\n", s.CustomerID,
		s.Start.UTC().Format(time.RFC3339), s.End.UTC().Format(time.RFC3339), state, s.Currency)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	row := func(label, amount, note string) { fmt.Fprintf(tw, "%s\t%s\t%s\t\n", label, amount, note) }
	for _, f := range s.Fees {
		row(fmt.Sprintf("  fee: plan %s v%d from %s", f.PlanID, f.PlanVersion, f.From.UTC().Format("2006-01-02")), money(f.Amount), "")
	}
	row("fixed fees", money(s.Fee), "")
	row("included usage", money(s.Included), "(allowance and included tokens)")
	for _, tk := range s.Tokens {
		row(fmt.Sprintf("  tokens: %s/%s %d of %d", tk.PlanID, tk.Group, tk.Used, tk.Allowance), money(tk.Value), "(value, not billed)")
	}
	for _, c := range s.Credits {
		row("  credit "+c.GrantID, money(c.Drawn), fmt.Sprintf("(granted %s, expired %s, voided %s, left %s)",
			money(c.Granted), money(c.Expired), money(c.Voided), money(c.Remaining)))
	}
	row("credits used", money(s.CreditsUsed), "")
	row("overage", money(s.Overage), "")
	if !s.Blocked.IsZero() {
		row("blocked overage", money(s.Blocked), "")
	}
	row("usage charge", money(s.UsageCharge), fmt.Sprintf("(exact %s USD, %d events)", s.ExactUsageCharge, s.Events))
	if !s.LateCharge.IsZero() {
		row("  of which late", money(s.LateCharge), fmt.Sprintf("(exact %s: timed before the period)", s.ExactLateCharge))
	}
	note := ""
	if !s.Adjustment.IsZero() {
		note = "(rounding adjustment " + s.Adjustment.String() + ")"
	}
	row("amount due", money(s.AmountDue), note)
	tw.Flush()
}
