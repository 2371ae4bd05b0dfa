package main

import (
	"flag"
	"fmt"
	"io"

	"github.com/rs/zerolog"

	"github.com/tariff-dev/tariff/sources"
)

// frontDoorFlags are the flags the HTTP front doors (bridge, gateway)
// share: a required configuration file, listen and broker overrides, and
// the log settings.
type frontDoorFlags struct {
	config, listen, brokers, logLevel, logFormat *string
}

// addFrontDoorFlags declares them on fs; section names the YAML section
// the overrides replace ("bridge", "gateway").
func addFrontDoorFlags(fs *flag.FlagSet, section, defaultListen string) *frontDoorFlags {
	return &frontDoorFlags{
		config:    fs.String("config", "", section+" configuration file (YAML with a "+section+": section; required)"),
		listen:    fs.String("listen", "", "address to listen on, host:port (overrides "+section+".listen; default "+defaultListen+")"),
		brokers:   fs.String("brokers", "", "Kafka bootstrap addresses, comma-separated (overrides "+section+".brokers)"),
		logLevel:  fs.String("log-level", "info", "log level: trace, debug, info, warn or error"),
		logFormat: fs.String("log-format", "", "log format: console or json (default: console on a terminal, json otherwise)"),
	}
}

// parse parses args and checks them; missing says what the configuration
// file holds, for the error when --config is absent. It returns the logger.
func (f *frontDoorFlags) parse(fs *flag.FlagSet, args []string, stderr io.Writer, missing string) (zerolog.Logger, error) {
	if err := parseFlags(fs, args); err != nil {
		return zerolog.Nop(), err
	}
	if fs.NArg() != 0 {
		fs.Usage()
		return zerolog.Nop(), errUsage
	}
	if *f.config == "" {
		fmt.Fprintf(stderr, "%s: --config FILE is required: %s\n", fs.Name(), missing)
		return zerolog.Nop(), errUsage
	}
	logCfg := LogConfig{Level: *f.logLevel, Format: *f.logFormat}
	if err := logCfg.validate("--log-level ", "--log-format "); err != nil {
		return zerolog.Nop(), err
	}
	return newLogger(logCfg, stderr), nil
}

// override applies --listen and --brokers to a loaded configuration.
func (f *frontDoorFlags) override(listen *string, brokers *[]string) {
	if *f.listen != "" {
		*listen = *f.listen
	}
	if *f.brokers != "" {
		*brokers = sources.SplitList(*f.brokers)
	}
}
