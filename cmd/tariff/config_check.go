package main

import (
	"errors"
	"fmt"
	"net"
	"regexp"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// checkMore validates the ops section and what the other sections'
// Validate methods do not check yet. It returns one error per bad field,
// each naming the field, the value and what was expected.
func (c *Config) checkMore() []error {
	var errs []error
	if err := c.Ops.Validate(); err != nil {
		errs = append(errs, err)
	}
	if !c.embedded() {
		for i, b := range c.Kafka.Brokers {
			if err := checkHostPort(b); err != nil {
				errs = append(errs, fmt.Errorf("kafka.brokers[%d]: %q: %w", i, b, err))
			}
		}
	}
	for t := range c.Kafka.Topics {
		if err := checkTopicName(t); err != nil {
			errs = append(errs, fmt.Errorf("kafka.topics: topic %q: %w", t, err))
		}
	}
	for field, t := range map[string]string{"kafka.dead_letter_topic": c.Kafka.DeadLetterTopic, "kafka.changelog_topic": c.Kafka.ChangelogTopic} {
		if err := checkTopicName(t); err != nil {
			errs = append(errs, fmt.Errorf("%s: %q: %w", field, t, err))
		}
	}
	if c.Embedded.Partitions < 0 {
		errs = append(errs, fmt.Errorf("embedded.partitions: %d: expected a positive count (default 3)", c.Embedded.Partitions))
	}
	if c.Output.ConsoleMaxPerSecond < 0 {
		errs = append(errs, fmt.Errorf("output.console_max_per_second: %d: expected a positive count (default 20)", c.Output.ConsoleMaxPerSecond))
	}
	return errs
}

func checkHostPort(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil || host == "" {
		return errors.New("expected host:port, e.g. kafka-1:9092")
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return fmt.Errorf("port %q: expected 1..65535", port)
	}
	return nil
}

var topicChars = regexp.MustCompile(`^[a-zA-Z0-9._-]+$`)

// checkTopicName applies Kafka's rules for topic names.
func checkTopicName(t string) error {
	switch {
	case t == "" || t == "." || t == "..":
		return errors.New("expected a Kafka topic name")
	case len(t) > 249:
		return fmt.Errorf("%d characters: expected at most 249", len(t))
	case !topicChars.MatchString(t):
		return errors.New("expected a Kafka topic name: letters, digits, '.', '_' and '-'")
	}
	return nil
}

// yamlLine matches one of yaml.v3's decoding errors: "line N: ...".
var yamlLine = regexp.MustCompile(`^line (\d+): (.*)$`)

var (
	yamlCannot  = regexp.MustCompile("^cannot unmarshal !!(\\w+)(?: `(.*)`)? into (.+)$")
	yamlUnknown = regexp.MustCompile(`^field (\S+) not found in type (.+)$`)
)

// explainYAMLError rewrites yaml.v3's decoding errors, which name a line
// and a Go type, to name the configuration field and what it expects:
//
//	line 12: cannot unmarshal !!str `8MB` into int
//
// becomes
//
//	kafka.max_batch_bytes (line 12): "8MB": expected a whole number
//
// An error it cannot place is returned unchanged.
func explainYAMLError(data []byte, err error) error {
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		return err
	}
	var root yaml.Node
	if yaml.Unmarshal(data, &root) != nil {
		return err
	}
	paths := map[int][]yamlField{} // line -> the fields whose key or value is on it
	walkYAML(&root, "", paths)
	var out []error
	for _, msg := range te.Errors {
		m := yamlLine.FindStringSubmatch(msg)
		if m == nil {
			out = append(out, errors.New(msg))
			continue
		}
		line, _ := strconv.Atoi(m[1])
		c := yamlCannot.FindStringSubmatch(m[2])
		field := "(line " + m[1] + ")"
		if c != nil {
			field = placeField(paths[line], c[1], c[2]) + field
		} else if p := paths[line]; len(p) > 0 {
			field = p[len(p)-1].path + " " + field
		}
		switch {
		case c != nil:
			out = append(out, fmt.Errorf("%s: %s: expected %s", field, yamlValue(c[1], c[2]), expectedFor(c[3])))
		case yamlUnknown.MatchString(m[2]):
			c := yamlUnknown.FindStringSubmatch(m[2])
			out = append(out, fmt.Errorf("%s: unknown field %q: expected one of the fields config.example.yaml documents (misspelt?)", field, c[1]))
		default:
			out = append(out, fmt.Errorf("%s: %s", field, m[2]))
		}
	}
	return errors.Join(out...)
}

// yamlField is a field's dotted path and its value node.
type yamlField struct {
	path string
	node *yaml.Node
}

// placeField picks, among the fields on an error's line, the one whose
// value the error quotes (a scalar) or whose kind it names (map, seq),
// with a trailing space; "" when none fits.
func placeField(fields []yamlField, tag, value string) string {
	for i := len(fields) - 1; i >= 0; i-- {
		n := fields[i].node
		switch {
		case tag == "map" && n.Kind == yaml.MappingNode,
			tag == "seq" && n.Kind == yaml.SequenceNode,
			tag != "map" && tag != "seq" && n.Kind == yaml.ScalarNode && n.Value == value:
			return fields[i].path + " "
		}
	}
	if len(fields) > 0 {
		return fields[len(fields)-1].path + " "
	}
	return ""
}

// walkYAML records every field's dotted path by the lines of its key and
// its value; sequence items get [i].
func walkYAML(n *yaml.Node, path string, paths map[int][]yamlField) {
	switch n.Kind {
	case yaml.DocumentNode:
		for _, c := range n.Content {
			walkYAML(c, path, paths)
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			p := k.Value
			if path != "" {
				p = path + "." + k.Value
			}
			paths[k.Line] = append(paths[k.Line], yamlField{p, v})
			if v.Line != k.Line {
				paths[v.Line] = append(paths[v.Line], yamlField{p, v})
			}
			walkYAML(v, p, paths)
		}
	case yaml.SequenceNode:
		for i, c := range n.Content {
			p := fmt.Sprintf("%s[%d]", path, i)
			if c.Kind == yaml.ScalarNode {
				paths[c.Line] = append(paths[c.Line], yamlField{p, c})
			}
			walkYAML(c, p, paths)
		}
	}
}

func yamlValue(tag, v string) string {
	switch tag {
	case "map":
		return "a mapping"
	case "seq":
		return "a list"
	}
	return strconv.Quote(v)
}

// expectedFor says in words what a Go type of the configuration takes.
func expectedFor(goType string) string {
	t := strings.TrimPrefix(goType, "*")
	switch {
	case t == "time.Duration":
		return "a duration such as 200ms, 30s or 1h"
	case t == "bool":
		return "true or false"
	case t == "string":
		return "a string (quote it)"
	case strings.HasPrefix(t, "int"), strings.HasPrefix(t, "uint"):
		return "a whole number (sizes in bytes, e.g. 8388608)"
	case strings.HasPrefix(t, "float"):
		return "a number"
	case strings.HasPrefix(t, "map["):
		return "a mapping of name: value"
	case strings.HasPrefix(t, "[]"):
		return "a list"
	}
	return "a section with fields (see config.example.yaml), not " + t
}
