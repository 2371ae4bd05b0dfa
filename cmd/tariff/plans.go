package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	"gopkg.in/yaml.v3"

	"github.com/tariff-dev/tariff/pipeline/balance"
)

// BalancesConfig is the `balances` section.
type BalancesConfig struct {
	// Plans is the plan catalog the admin API assigns by id (PUT
	// /v1/customers/{id}/plan {"plan_id": ...}); each entry is a plan as
	// in pipeline/balance.Plan (id, version, cycle, fee, allowance,
	// token_groups, overage, credits, thresholds). A plan in force stays
	// as it was assigned: to change terms, add the plan with a higher
	// version and assign it. Default none.
	Plans PlanCatalog `yaml:"plans"`
}

// PlanCatalog is a list of plans read from YAML exactly: amounts keep the
// digits written (12.50 is the decimal 12.50, never a float).
type PlanCatalog []balance.Plan

// UnmarshalYAML converts the YAML to JSON with every scalar's text as
// written, then decodes it with the plans' own JSON rules, refusing
// unknown fields.
func (c *PlanCatalog) UnmarshalYAML(n *yaml.Node) error {
	var buf bytes.Buffer
	if err := yamlToJSON(&buf, n); err != nil {
		return err
	}
	dec := json.NewDecoder(&buf)
	dec.DisallowUnknownFields()
	var plans []balance.Plan
	if err := dec.Decode(&plans); err != nil {
		return fmt.Errorf("balances.plans: %w", err)
	}
	*c = plans
	return nil
}

// yamlToJSON writes n as JSON. Numbers are written with their YAML text,
// so that decimal amounts reach the exact JSON decoders untouched.
func yamlToJSON(w *bytes.Buffer, n *yaml.Node) error {
	switch n.Kind {
	case yaml.DocumentNode:
		if len(n.Content) == 0 {
			w.WriteString("null")
			return nil
		}
		return yamlToJSON(w, n.Content[0])
	case yaml.AliasNode:
		return yamlToJSON(w, n.Alias)
	case yaml.SequenceNode:
		w.WriteByte('[')
		for i, c := range n.Content {
			if i > 0 {
				w.WriteByte(',')
			}
			if err := yamlToJSON(w, c); err != nil {
				return err
			}
		}
		w.WriteByte(']')
	case yaml.MappingNode:
		w.WriteByte('{')
		for i := 0; i+1 < len(n.Content); i += 2 {
			if i > 0 {
				w.WriteByte(',')
			}
			k, _ := json.Marshal(n.Content[i].Value)
			w.Write(k)
			w.WriteByte(':')
			if err := yamlToJSON(w, n.Content[i+1]); err != nil {
				return err
			}
		}
		w.WriteByte('}')
	case yaml.ScalarNode:
		switch n.ShortTag() {
		case "!!int", "!!float":
			if _, err := strconv.ParseFloat(n.Value, 64); err != nil || !json.Valid([]byte(n.Value)) {
				return fmt.Errorf("line %d: %q: expected a decimal number (write it in quotes if it is text)", n.Line, n.Value)
			}
			w.WriteString(n.Value)
		case "!!bool":
			w.WriteString(strconv.FormatBool(n.Value == "true"))
		case "!!null":
			w.WriteString("null")
		default:
			s, _ := json.Marshal(n.Value)
			w.Write(s)
		}
	default:
		return errors.New("balances.plans: unexpected YAML")
	}
	return nil
}

// validate checks every plan and that ids are unique.
func (b BalancesConfig) validate() error {
	var errs []error
	seen := map[string]bool{}
	for i := range b.Plans {
		p := &b.Plans[i]
		if err := p.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("balances.plans[%d]: %w", i, err))
		}
		if seen[p.ID] {
			errs = append(errs, fmt.Errorf("balances.plans[%d].id: %q: expected each plan id once (add a new version under its own entry by raising version, and remove the old)", i, p.ID))
		}
		seen[p.ID] = true
	}
	return errors.Join(errs...)
}
