package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"text/tabwriter"
	"time"

	"github.com/tariff-dev/tariff/sources/gateway"
)

func cmdGateway(args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "keys" {
		return cmdGatewayKeys(args[1:], stdout, stderr)
	}
	fs := newFlags("gateway", `Run the AI gateway: an HTTP server that speaks the OpenAI Chat Completions
(POST /v1/chat/completions) and Responses (POST /v1/responses) APIs and the
Anthropic Messages API (POST /v1/messages) to your customers, forwards each
request to the upstream its model routes to (OpenAI, Anthropic, OpenRouter or
any OpenAI-compatible server) with the upstream key the gateway holds, passes
the answer through (streams event by event), and publishes one usage event per
response to Kafka, keyed by customer id. When Kafka is down, events wait in a
local spool and are published when it is back.

Customers are identified by gateway keys (tariff gateway keys add --customer
ID) or, for your own backend, by a trusted header with a shared secret. A
paused customer (entitlement check) is answered 402 in the API's own format.

The configuration file has a "gateway:" section; see
sources/gateway/README.md and sources/gateway/gateway.example.yaml.
Environment overrides: TARIFF_GATEWAY_LISTEN, TARIFF_KAFKA_BROKERS,
TARIFF_GATEWAY_TOPIC, TARIFF_GATEWAY_SPOOL_DIR, TARIFF_GATEWAY_KEYS_FILE.
Flags override both. Stop with SIGINT or SIGTERM: requests in flight finish
and every usage event is published or spooled first.

Keys: tariff gateway keys add|list|revoke (tariff gateway keys --help).`, "", stderr)
	ff := addFrontDoorFlags(fs, "gateway", gateway.DefaultListen)
	log, err := ff.parse(fs, args, stderr, "it lists the upstreams and routes (see sources/gateway/README.md)")
	if err != nil {
		return err
	}
	configPath := ff.config
	cfg, err := gateway.LoadFile(*configPath)
	if err != nil {
		return err
	}
	ff.override(&cfg.Listen, &cfg.Brokers)
	pub := gateway.NewKafkaPublisher(*cfg, log, gateway.KafkaOptions{})
	g, err := gateway.New(*cfg, pub, log)
	if err != nil {
		_ = pub.Close()
		return fmt.Errorf("config %s:\n%w", *configPath, err)
	}
	ctx, stop := signalContext(stderr)
	defer stop()
	runErr := g.Run(ctx)
	// Run returned: every request is answered and every usage event is in
	// Kafka or the spool. Close the spool, then the Kafka writer.
	started := time.Now()
	spoolErr := g.Close()
	pubErr := pub.Close()
	log.Info().Str("component", "gateway").Dur("took", time.Since(started)).Msg("spool and kafka writer closed")
	return errors.Join(runErr, spoolErr, pubErr)
}

func cmdGatewayKeys(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("gateway keys", `Manage the gateway's customer keys.

  tariff gateway keys add --customer ID     issue a key; it is printed once, on standard output
  tariff gateway keys list                  list keys: id, customer, creation time (never a key)
  tariff gateway keys revoke --id ID        revoke one key
  tariff gateway keys revoke --customer ID  revoke every key of a customer

The key file stores only each key's SHA-256. A running gateway picks changes
up within keys.reload_interval. The file is --file, else the config's
gateway.keys.file, else TARIFF_GATEWAY_KEYS_FILE, else `+gateway.DefaultKeysFile+`.`, "add|list|revoke", stderr)
	file := fs.String("file", "", "key file (overrides the config's gateway.keys.file)")
	configPath := fs.String("config", "", "gateway configuration file to take gateway.keys.file from")
	customer := fs.String("customer", "", "customer id (add: required; revoke: every key of this customer)")
	id := fs.String("id", "", "key id (revoke)")
	// Flags may come after the subcommand: tariff gateway keys add --customer acme.
	var sub string
	if len(args) > 0 && len(args[0]) > 0 && args[0][0] != '-' {
		sub, args = args[0], args[1:]
	}
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if sub == "" && fs.NArg() > 0 {
		sub = fs.Arg(0)
	}
	path := *file
	if path == "" {
		if *configPath != "" {
			cfg, err := gateway.LoadFile(*configPath)
			if err != nil {
				return err
			}
			path = cfg.Keys.File
		}
		if path == "" {
			path = os.Getenv("TARIFF_GATEWAY_KEYS_FILE")
		}
		if path == "" {
			path = gateway.DefaultKeysFile
		}
	}
	switch sub {
	case "add":
		if *customer == "" {
			fmt.Fprintln(stderr, "tariff gateway keys add: --customer ID is required")
			return errUsage
		}
		key, rec, err := gateway.AddKey(path, *customer, time.Now())
		if err != nil {
			return err
		}
		fmt.Fprintf(stderr, "issued key %s for customer %s in %s; it is shown once, below: store it now\n", rec.ID, rec.Customer, path)
		fmt.Fprintln(stdout, key)
		return nil
	case "list":
		recs, err := gateway.ReadKeyFile(path)
		if err != nil {
			return err
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tCUSTOMER\tCREATED")
		for _, r := range recs {
			fmt.Fprintf(tw, "%s\t%s\t%s\n", r.ID, r.Customer, r.Created.Format(time.RFC3339))
		}
		return tw.Flush()
	case "revoke":
		if (*id == "") == (*customer == "") {
			fmt.Fprintln(stderr, "tariff gateway keys revoke: expected --id ID or --customer ID")
			return errUsage
		}
		gone, err := gateway.RevokeKeys(path, *id, *customer)
		if err != nil {
			return err
		}
		if len(gone) == 0 {
			return fmt.Errorf("no key matches in %s", path)
		}
		for _, r := range gone {
			fmt.Fprintf(stdout, "revoked %s (customer %s)\n", r.ID, r.Customer)
		}
		return nil
	}
	fs.Usage()
	return errUsage
}
