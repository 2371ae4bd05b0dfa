// Command tariff rates LLM token usage from Kafka into money.
//
// main only parses the command line, loads the configuration, builds the
// components and runs them; the work lives in the packages.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
)

// command is one subcommand.
type command struct {
	name    string
	summary string
	run     func(args []string, stdout, stderr io.Writer) error
}

var commands = []command{
	{"run", "consume usage from Kafka, rate it and write it to ClickHouse (or, with no config, run everything embedded)", cmdRun},
	{"demo", "run the embedded default and feed it realistic synthetic usage", cmdDemo},
	{"rate", "rate usage events from files or standard input against a price list, one JSON object per event", cmdRate},
	{"migrate", "create or upgrade tariff's ClickHouse tables", cmdMigrate},
	{"send", "publish usage events from files or standard input to a Kafka topic", cmdSend},
	{"loadgen", "publish a realistic synthetic usage stream to Kafka and write the exact totals it must produce", cmdLoadgen},
	{"bridge", "run the webhook bridge: an HTTP server partners post usage to, published to Kafka keyed by customer", cmdBridge},
	{"gateway", "run the AI gateway: OpenAI and Anthropic APIs for your customers, forwarded upstream, each response's usage published to Kafka", cmdGateway},
	{"setup", "create the first price version, a default rate card (--markup 30%), the Kafka topics and the ClickHouse tables", cmdSetup},
	{"prices", "prices sync|diff|list|show: record new prices, compare price lists, show the prices in force", cmdPrices},
	{"deadletters", "deadletters list|redrive: count dead-lettered messages, or send them again (events held as unpriced, once their model has a price)", cmdDeadLetters},
	{"statement", "statement --customer ID [--period 2026-11]: a customer's billing period, fees, credits and amount due", cmdStatement},
	{"replay", "replay --from TIME [--to TIME] [--customer ID]: re-rate a range (after a price correction) into a new rating run", cmdReplay},
	{"config", "config check FILE: validate a configuration file", cmdConfig},
	{"version", "print the version", cmdVersion},
}

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

// errUsage marks a command-line mistake: main prints the usage and exits 2.
var errUsage = errors.New("usage")

func main() {
	os.Exit(runMain(os.Args[1:], os.Stdout, os.Stderr))
}

func runMain(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stdout)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	for _, c := range commands {
		if c.name == args[0] {
			err := c.run(args[1:], stdout, stderr)
			switch {
			case err == nil:
				return 0
			case errors.Is(err, flag.ErrHelp):
				return 0
			case errors.Is(err, errUsage):
				return 2
			case errors.Is(err, errRejected):
				return 1
			}
			fmt.Fprintf(stderr, "tariff %s: %v\n", c.name, err)
			return 1
		}
	}
	fmt.Fprintf(stderr, "tariff: unknown command %q\n\n", args[0])
	usage(stderr)
	return 2
}

func usage(w io.Writer) {
	fmt.Fprint(w, `tariff turns LLM token usage into money: it rates every usage event against
provider prices plus your markup and writes the result where you bill from.

Usage:
  tariff <command> [flags]

Commands:
`)
	width := 0
	for _, c := range commands {
		width = max(width, len(c.name))
	}
	for _, c := range commands {
		fmt.Fprintf(w, "  %-*s  %s\n", width, c.name, c.summary)
	}
	fmt.Fprint(w, `
Run 'tariff <command> --help' for the flags of a command.
With no configuration, 'tariff run' starts an embedded Kafka-protocol broker
on 127.0.0.1:9092 and writes rated usage to ./tariff-data/rated.jsonl.
`)
}

// newFlags returns a FlagSet whose --help prints summary and the flags.
func newFlags(name, summary, argsUsage string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("tariff "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: tariff %s [flags] %s\n\n%s\n\nFlags:\n", name, argsUsage, summary)
		fs.PrintDefaults()
	}
	return fs
}

// parseFlags parses args, turning a parse error into errUsage (the flag
// package has already printed what was wrong and the usage).
func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return errUsage
	}
	return nil
}

func cmdVersion(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("version", "Print the version of tariff.", "", stderr)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	fmt.Fprintln(stdout, "tariff", version)
	return nil
}

func cmdConfig(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("config", "config check FILE validates a configuration file and names every bad field.", "check FILE", stderr)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 2 || fs.Arg(0) != "check" {
		fs.Usage()
		return errUsage
	}
	if _, err := LoadConfig(fs.Arg(1)); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s: ok\n", fs.Arg(1))
	return nil
}
