// Command musicrec-ferretdb runs FerretDB v1.24 (MongoDB wire protocol) on its PostgreSQL backend,
// embedded as a library. Building `cmd/ferretdb` with `go install` panics at start-up because its version
// package needs a generated version.txt when FerretDB is the main module; embedding it avoids that check.
//
// The PostgreSQL cluster, its `_id` index trigger and its pool limits are set up by
// `python -m stack.services up` (see stack/postgres.py and common/store.py); this program only serves.
package main

import (
	"context"
	"flag"
	"log"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/FerretDB/FerretDB/ferretdb"
)

func main() {
	listen := flag.String("listen-addr", "127.0.0.1:27017", "TCP address to listen on")
	pgURL := flag.String("postgresql-url", "", "PostgreSQL URL, e.g. postgres://user@127.0.0.1:5432/ferretdb?pool_max_conns=60")
	level := flag.String("log-level", "warn", "log level: debug, info, warn, error")
	flag.Parse()

	if *pgURL == "" {
		log.Fatalf("musicrec-ferretdb: -postgresql-url is required")
	}
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(*level)); err != nil {
		log.Fatalf("musicrec-ferretdb: bad -log-level %q", *level)
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: lvl}))
	f, err := ferretdb.New(&ferretdb.Config{
		Logger:        logger,
		Listener:      ferretdb.ListenerConfig{TCP: *listen},
		Handler:       "postgresql",
		PostgreSQLURL: *pgURL,
	})
	if err != nil {
		log.Fatalf("musicrec-ferretdb: %v", err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	log.Printf("musicrec-ferretdb: FerretDB (postgresql) listening on %s", *listen)
	if err := f.Run(ctx); err != nil && ctx.Err() == nil {
		log.Fatalf("musicrec-ferretdb: %v", err)
	}
}
