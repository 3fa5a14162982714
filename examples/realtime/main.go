// Command realtime is a small chat: rooms that browsers join over a
// WebSocket, per-user notifications, and history that survives reloads —
// all through PostgreSQL, with no message broker.
//
//	go run ./examples/realtime            # then open http://localhost:8080
//
// Open the page in two browsers with different names. Messages are
// published inside the transaction that stores them (delivered only if it
// commits); every room is a durable stream, so a reloaded page resumes
// where it left off. Run two copies on different ports against the same
// DATABASE_URL and they chat with each other: PostgreSQL does the fan-out.
// "Someone is typing" notes are published Ephemeral: live only, never kept
// in the room's stream.
package main

import (
	"context"
	"embed"
	"encoding/json"
	"errors"
	"flag"
	"io/fs"
	"log"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"regexp"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/justpg/justpg/internal/pgtest"
	"github.com/justpg/justpg/realtime"
)

//go:embed static
var static embed.FS

var (
	addr  = flag.String("addr", "localhost:8080", "listen address")
	rooms = []string{"room:lobby", "room:go", "room:postgres"}
	// Names become part of channel names, so they are restricted.
	nameRE = regexp.MustCompile(`^[a-z0-9_]{1,20}$`)
)

// ChatMessage is what a room carries: a message, or (Typing) a note that
// someone is typing, which is published Ephemeral: shown live, never kept in
// the room's stream.
type ChatMessage struct {
	From   string    `json:"from"`
	Text   string    `json:"text,omitempty"`
	At     time.Time `json:"at"`
	Typing bool      `json:"typing,omitempty"`
}

// Mention is a per-user notification.
type Mention struct {
	Room string `json:"room"`
	From string `json:"from"`
}

func main() {
	flag.Parse()
	if err := run(); err != nil {
		log.Fatal(err)
	}
}

func run() error {
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	url, stop, err := pgtest.ExampleDatabase(ctx, "justpg_realtime_example")
	if err != nil {
		return err
	}
	defer stop()
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		return err
	}
	defer pool.Close()
	if err := realtime.Migrate(ctx, pool); err != nil {
		return err
	}
	if _, err := pool.Exec(ctx, `CREATE TABLE IF NOT EXISTS chat_messages (
		id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
		room text NOT NULL, sender text NOT NULL, body text NOT NULL,
		created_at timestamptz NOT NULL DEFAULT now())`); err != nil {
		return err
	}

	b, err := realtime.New(pool, realtime.Config{Logger: slog.Default()})
	if err != nil {
		return err
	}
	for _, r := range rooms {
		if err := b.CreateStream(ctx, pool, r, realtime.StreamConfig{MaxLen: 200, MaxAge: 24 * time.Hour}); err != nil {
			return err
		}
	}
	if err := b.Start(ctx); err != nil {
		return err
	}
	defer b.Stop(context.Background())

	bridge, err := realtime.NewBridge(b, realtime.BridgeConfig{
		// A real application checks its session cookie here.
		Authorize: func(r *http.Request) (realtime.Identity, error) {
			name := r.URL.Query().Get("name")
			if !nameRE.MatchString(name) {
				return realtime.Identity{}, errors.New("bad name")
			}
			return realtime.Identity{
				ID:       name,
				Channels: []string{"user:" + name},
				CanJoin: func(ch string) bool {
					for _, r := range rooms {
						if ch == r {
							return true
						}
					}
					return false
				},
			}, nil
		},
	})
	if err != nil {
		return err
	}

	mux := http.NewServeMux()
	sub, _ := fs.Sub(static, "static")
	mux.Handle("GET /", http.FileServerFS(sub))
	mux.Handle("GET /ws", bridge)
	mux.HandleFunc("POST /send", func(w http.ResponseWriter, r *http.Request) {
		send(w, r, b, pool)
	})
	mux.HandleFunc("POST /typing", func(w http.ResponseWriter, r *http.Request) {
		typing(w, r, b, pool)
	})
	srv := &http.Server{Addr: *addr, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, c := context.WithTimeout(context.Background(), 5*time.Second)
		defer c()
		_ = srv.Shutdown(sctx)
	}()
	log.Printf("chat on http://%s", *addr)
	if err := srv.ListenAndServe(); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

type input struct{ Name, Room, Text string }

// decode reads a request's input; it answers the request and reports false
// when the input is bad.
func decode(w http.ResponseWriter, r *http.Request, needText bool) (input, bool) {
	var in input
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 8<<10)).Decode(&in); err != nil ||
		!nameRE.MatchString(in.Name) || (needText && strings.TrimSpace(in.Text) == "") {
		http.Error(w, "bad request", http.StatusBadRequest)
		return in, false
	}
	for _, room := range rooms {
		if room == in.Room {
			return in, true
		}
	}
	http.Error(w, "unknown room", http.StatusBadRequest)
	return in, false
}

// typing tells a room that someone is typing: an ephemeral message, so it
// skips the room's stream and a reloaded page does not replay it.
func typing(w http.ResponseWriter, r *http.Request, b *realtime.Broker, pool *pgxpool.Pool) {
	in, ok := decode(w, r, false)
	if !ok {
		return
	}
	msg := ChatMessage{From: in.Name, At: time.Now().UTC(), Typing: true}
	if err := realtime.PublishJSON(r.Context(), b, pool, in.Room, msg, realtime.Ephemeral()); err != nil {
		http.Error(w, "publish failed", http.StatusInternalServerError)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// send stores a message and publishes it (and @mentions) in one transaction.
func send(w http.ResponseWriter, r *http.Request, b *realtime.Broker, pool *pgxpool.Pool) {
	in, ok := decode(w, r, true)
	if !ok {
		return
	}
	ctx := r.Context()
	tx, err := pool.Begin(ctx)
	if err != nil {
		http.Error(w, "database unavailable", http.StatusServiceUnavailable)
		return
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, `INSERT INTO chat_messages (room, sender, body) VALUES ($1, $2, $3)`,
		in.Room, in.Name, in.Text); err != nil {
		http.Error(w, "store failed", http.StatusInternalServerError)
		return
	}
	msg := ChatMessage{From: in.Name, Text: in.Text, At: time.Now().UTC()}
	if err := realtime.PublishJSON(ctx, b, tx, in.Room, msg); err != nil {
		http.Error(w, "publish failed", http.StatusInternalServerError)
		return
	}
	var mentions []realtime.Message
	for _, word := range strings.Fields(in.Text) {
		if to, ok := strings.CutPrefix(word, "@"); ok && nameRE.MatchString(to) && to != in.Name {
			p, _ := json.Marshal(Mention{Room: in.Room, From: in.Name})
			mentions = append(mentions, realtime.Message{Channel: "user:" + to, Payload: p})
		}
	}
	if err := b.PublishBatch(ctx, tx, mentions); err != nil {
		http.Error(w, "publish failed", http.StatusInternalServerError)
		return
	}
	if err := tx.Commit(ctx); err != nil {
		http.Error(w, "commit failed", http.StatusInternalServerError)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
