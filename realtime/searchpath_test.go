package realtime_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/justpg/justpg/internal/pgtest"
	"github.com/justpg/justpg/realtime"
)

// Publish, PublishBatch, durable streams, large payloads and the
// table-change trigger work from sessions whose search_path holds neither
// the package's schema nor public: only the application's own schema, or
// nothing.
func TestPublishWithUnusualSearchPath(t *testing.T) {
	t.Parallel()
	for _, sp := range []string{"app", "''", "pg_catalog"} {
		t.Run(sp, func(t *testing.T) {
			t.Parallel()
			db := bbDB(t, pgtest.WithSearchPath(sp))
			db.AdminExec(t, `CREATE SCHEMA app;
				CREATE TABLE app.todos (id bigint PRIMARY KEY, title text NOT NULL, done boolean NOT NULL DEFAULT false)`)
			b := bbBroker(t, db.Pool, bbFastCfg())
			ctx := bbCtx(t)

			plain := bbSub(t, b, "sp:plain")
			bbPublish(t, b, db.Pool, "sp:plain", "hello")
			big := strings.Repeat("x", 9000)
			bbPublish(t, b, db.Pool, "sp:plain", big)
			bbPublish(t, b, db.Pool, "sp:plain", "\x1estarts with the separator")
			if got := bbMsg(t, plain); got != "hello" {
				t.Fatalf("got %q", short(got))
			}
			if got := bbMsg(t, plain); got != big {
				t.Fatalf("large payload: got %d bytes", len(got))
			}
			if got := bbMsg(t, plain); got != "\x1estarts with the separator" {
				t.Fatalf("got %q", short(got))
			}
			if err := b.PublishBatch(ctx, db.Pool, []realtime.Message{
				{Channel: "sp:plain", Payload: []byte("b1")}, {Channel: "sp:plain", Payload: []byte("b2")},
			}); err != nil {
				t.Fatal(err)
			}
			if err := b.PublishBatch(ctx, db.Pool, []realtime.Message{
				{Channel: "sp:plain", Payload: []byte("b3")}, {Channel: "sp:plain", Payload: []byte(big)},
			}); err != nil {
				t.Fatal(err)
			}
			for _, want := range []string{"b1", "b2", "b3", big} {
				if got := bbMsg(t, plain); got != want {
					t.Fatalf("batch: got %q, want %q", short(got), short(want))
				}
			}

			if err := b.CreateStream(ctx, db.Pool, "sp:durable", realtime.StreamConfig{}); err != nil {
				t.Fatal(err)
			}
			durable := bbSub(t, b, "sp:durable")
			bbPublish(t, b, db.Pool, "sp:durable", "e1")
			bbPublish(t, b, db.Pool, "sp:durable", big)
			if err := b.PublishBatch(ctx, db.Pool, []realtime.Message{
				{Channel: "sp:durable", Payload: []byte("e3")}, {Channel: "sp:plain", Payload: []byte("p")},
			}); err != nil {
				t.Fatal(err)
			}
			for i, want := range []string{"e1", big, "e3"} {
				ev := bbNext(t, durable)
				if string(ev.Payload) != want || ev.ID != int64(i+1) {
					t.Fatalf("durable event %d: id %d, %q", i+1, ev.ID, short(string(ev.Payload)))
				}
			}
			evs, err := b.ReadStream(ctx, db.Pool, "sp:durable", 0, 10)
			if err != nil || len(evs) != 3 {
				t.Fatalf("ReadStream: %d events, %v", len(evs), err)
			}

			if err := b.InstallTableChanges(ctx, db.Pool, realtime.TableChanges{
				Schema: "app", Table: "todos", Channel: "sp:todos", Key: []string{"id"}, Columns: []string{"title"},
			}); err != nil {
				t.Fatal(err)
			}
			changes := bbSub(t, b, "sp:todos")
			if _, err := db.Pool.Exec(ctx, `INSERT INTO app.todos (id, title) VALUES (1, 'milk')`); err != nil {
				t.Fatal(err)
			}
			var c realtime.TableChange[map[string]int, map[string]string]
			if err := json.Unmarshal(bbNext(t, changes).Payload, &c); err != nil {
				t.Fatal(err)
			}
			if c.Op != "INSERT" || c.Schema != "app" || c.Key["id"] != 1 || c.Data["title"] != "milk" {
				t.Fatalf("table change: %+v", c)
			}
		})
	}
}

// The publish functions and the table-change trigger run with the
// privileges of whoever publishes or writes the table. A role that may
// create objects in public (every role could before PostgreSQL 15, and
// databases upgraded since keep that grant) plants an operator and a
// function that match the functions' calls more closely than the built-in
// ones; the functions must not resolve to them.
func TestPublishIgnoresObjectsPlantedInPublic(t *testing.T) {
	t.Parallel()
	db := bbDB(t)
	evil := "rt_evil_" + randSuffix()
	db.AdminExec(t, `CREATE ROLE `+evil+` NOLOGIN;
		GRANT CREATE, USAGE ON SCHEMA public TO `+evil+`;
		CREATE TABLE public.todos (id bigint PRIMARY KEY, title text NOT NULL);
		SET ROLE `+evil+`;
		CREATE FUNCTION public.trojan_cat(text, bigint) RETURNS text LANGUAGE plpgsql AS
			$$ BEGIN RAISE EXCEPTION 'trojan || ran as %', current_user; END $$;
		CREATE OPERATOR public.|| (LEFTARG = text, RIGHTARG = bigint, FUNCTION = public.trojan_cat);
		CREATE FUNCTION public.jsonb_build_object(text, text, text, name, text, name, text, jsonb, text, jsonb)
			RETURNS jsonb LANGUAGE plpgsql AS
			$$ BEGIN RAISE EXCEPTION 'trojan jsonb_build_object ran as %', current_user; END $$;
		CREATE FUNCTION public.unnest(text[]) RETURNS SETOF text LANGUAGE plpgsql AS
			$$ BEGIN RAISE EXCEPTION 'trojan unnest ran as %', current_user; END $$;
		CREATE FUNCTION public.cardinality(text[]) RETURNS integer LANGUAGE plpgsql AS
			$$ BEGIN RAISE EXCEPTION 'trojan cardinality ran as %', current_user; END $$;
		CREATE FUNCTION public.array_fill(text, integer[]) RETURNS text[] LANGUAGE plpgsql AS
			$$ BEGIN RAISE EXCEPTION 'trojan array_fill ran as %', current_user; END $$;
		CREATE FUNCTION public.trojan_acc(text[], text) RETURNS text[] LANGUAGE plpgsql AS
			$$ BEGIN RAISE EXCEPTION 'trojan array_agg ran as %', current_user; END $$;
		CREATE AGGREGATE public.array_agg(text) (SFUNC = public.trojan_acc, STYPE = text[]);
		RESET ROLE`)
	t.Cleanup(func() {
		ctx := context.Background()
		conn, err := pgx.Connect(ctx, db.URL)
		if err != nil {
			t.Error(err)
			return
		}
		defer conn.Close(ctx)
		_, _ = conn.Exec(ctx, `DROP OWNED BY `+evil)
		_, _ = conn.Exec(ctx, `DROP ROLE `+evil)
	})
	b := bbBroker(t, db.Pool, bbFastCfg())
	ctx := bbCtx(t)
	if err := b.CreateStream(ctx, db.Pool, "trojan:durable", realtime.StreamConfig{}); err != nil {
		t.Fatal(err)
	}
	durable := bbSub(t, b, "trojan:durable")
	bbPublish(t, b, db.Pool, "trojan:durable", "e1")
	bbPublish(t, b, db.Pool, "trojan:durable", strings.Repeat("y", 9000))
	if ev := bbNext(t, durable); ev.ID != 1 || string(ev.Payload) != "e1" {
		t.Fatalf("event %d %q", ev.ID, short(string(ev.Payload)))
	}
	if ev := bbNext(t, durable); ev.ID != 2 || len(ev.Payload) != 9000 {
		t.Fatalf("event %d of %d bytes", ev.ID, len(ev.Payload))
	}
	plain := bbSub(t, b, "trojan:plain")
	bbPublish(t, b, db.Pool, "trojan:plain", strings.Repeat("z", 9000))
	if got := bbMsg(t, plain); len(got) != 9000 {
		t.Fatalf("large payload of %d bytes", len(got))
	}
	// Publish's own statements run with the session's search_path, which
	// here has public in it (the default "$user", public).
	if err := b.Publish(ctx, db.Pool, "trojan:plain", []byte(strings.Repeat("w", 9000)), realtime.Ephemeral()); err != nil {
		t.Fatal(err)
	}
	if got := bbMsg(t, plain); len(got) != 9000 {
		t.Fatalf("large ephemeral payload of %d bytes", len(got))
	}
	// PublishBatch's three statements: one channel, several, and one with a
	// durable channel (through realtime_publish_many).
	for _, batch := range [][]realtime.Message{
		{{Channel: "trojan:plain", Payload: []byte("b1")}, {Channel: "trojan:plain", Payload: []byte("b2")}},
		{{Channel: "trojan:plain", Payload: []byte("b3")}, {Channel: "trojan:other", Payload: []byte("o")}},
		{{Channel: "trojan:durable", Payload: []byte("e3")}, {Channel: "trojan:plain", Payload: []byte("b4")}},
	} {
		if err := b.PublishBatch(ctx, db.Pool, batch); err != nil {
			t.Fatal(err)
		}
	}
	for _, want := range []string{"b1", "b2", "b3", "b4"} {
		if got := bbMsg(t, plain); got != want {
			t.Fatalf("batch: got %q, want %q", short(got), want)
		}
	}
	if ev := bbNext(t, durable); ev.ID != 3 || string(ev.Payload) != "e3" {
		t.Fatalf("event %d %q", ev.ID, short(string(ev.Payload)))
	}
	if err := b.InstallTableChanges(ctx, db.Pool, realtime.TableChanges{
		Table: "todos", Channel: "trojan:todos", Key: []string{"id"}, Columns: []string{"title"},
	}); err != nil {
		t.Fatal(err)
	}
	changes := bbSub(t, b, "trojan:todos")
	if _, err := db.Pool.Exec(ctx, `INSERT INTO public.todos (id, title) VALUES (1, 'milk')`); err != nil {
		t.Fatal(err)
	}
	if got := bbMsg(t, changes); !strings.Contains(got, `"milk"`) {
		t.Fatalf("table change %q", got)
	}
}

func randSuffix() string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// Migration 002 writes the schema into the functions' bodies: a schema
// whose name needs quoting works too, from a session whose search_path does
// not hold it.
func TestPublishInQuotedSchemaWithAppSearchPath(t *testing.T) {
	t.Parallel()
	db := bbDB(t, pgtest.WithSearchPath("app"))
	const schema = `Real "Time"`
	ctx := bbCtx(t)
	if err := realtime.MigrateSchema(ctx, db.Pool, schema); err != nil {
		t.Fatal(err)
	}
	db.AdminExec(t, `CREATE SCHEMA app; CREATE TABLE app.todos (id bigint PRIMARY KEY, title text NOT NULL)`)
	cfg := bbFastCfg()
	cfg.Schema = schema
	b := bbBroker(t, db.Pool, cfg)
	if err := b.CreateStream(ctx, db.Pool, "q:durable", realtime.StreamConfig{}); err != nil {
		t.Fatal(err)
	}
	durable := bbSub(t, b, "q:durable")
	big := strings.Repeat("q", 9000)
	bbPublish(t, b, db.Pool, "q:durable", "e1")
	if err := b.PublishBatch(ctx, db.Pool, []realtime.Message{{Channel: "q:durable", Payload: []byte(big)}, {Channel: "q:plain", Payload: []byte("p")}}); err != nil {
		t.Fatal(err)
	}
	if ev := bbNext(t, durable); ev.ID != 1 || string(ev.Payload) != "e1" {
		t.Fatalf("event %d %q", ev.ID, short(string(ev.Payload)))
	}
	if ev := bbNext(t, durable); ev.ID != 2 || string(ev.Payload) != big {
		t.Fatalf("event %d of %d bytes", ev.ID, len(ev.Payload))
	}
	if err := b.InstallTableChanges(ctx, db.Pool, realtime.TableChanges{
		Schema: "app", Table: "todos", Channel: "q:todos", Key: []string{"id"},
	}); err != nil {
		t.Fatal(err)
	}
	changes := bbSub(t, b, "q:todos")
	if _, err := db.Pool.Exec(ctx, `INSERT INTO app.todos VALUES (1, 'x')`); err != nil {
		t.Fatal(err)
	}
	if got := bbMsg(t, changes); !strings.Contains(got, `"INSERT"`) {
		t.Fatalf("table change %q", got)
	}
}
