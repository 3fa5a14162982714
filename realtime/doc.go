// Package realtime is pub/sub over PostgreSQL LISTEN/NOTIFY that survives
// reconnects, with durable streams and a WebSocket/SSE bridge to browsers:
// what Pusher, Ably or Socket.io with Redis do, with PostgreSQL doing the
// fan-out between application processes.
//
// # Publishing
//
// A Broker publishes through any DB: the pool, or the caller's own
// transaction, in which case the message is delivered when it commits and
// never if it rolls back ("store first, notify second" by construction):
//
//	b, _ := realtime.New(pool, realtime.Config{})
//	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
//		// ... insert the order ...
//		return realtime.PublishJSON(ctx, b, tx, "user:42", OrderPlaced{ID: id})
//	})
//
// Publish, PublishBatch (many messages, one round trip) and the generic
// PublishJSON/PublishJSONBatch send pg_notify with bind parameters, one
// statement per call. A payload that fits in a notification goes out as a
// bare pg_notify guarded by one index probe of realtime_streams: a
// hand-written SELECT pg_notify($1, $2) plus about 4 µs of server time
// for the probe. A batch of such payloads is one set-based pg_notify over
// two arrays. Durable channels and large payloads go through the SQL
// functions realtime_publish and realtime_publish_many, which log the
// event or store the payload. (A transaction that only notifies writes no
// WAL before its commit record, so PostgreSQL commits it without waiting
// for a WAL flush.) Messages of one transaction arrive in publish order.
// As with NOTIFY itself, identical (channel, payload) pairs in one
// transaction are delivered once, unless the channel has a stream or the
// payload is too large for a notification.
//
// Publish with the Ephemeral option sends to live subscribers only: the
// message is never logged in a durable stream (durable subscribers get it
// live with ID 0, a later resume does not replay it), so no stream is
// looked up. Through a pool or a connection it calls pg_notify with
// PostgreSQL's function-call protocol message, which has no statement to
// parse, bind, plan or execute: the cheapest publish PostgreSQL offers,
// faster than a hand-written SELECT pg_notify($1, $2) (bench/RESULTS.md).
// Use it for typing indicators, cursors and presence, and on channels that
// never have a stream; Config.DisableFastPath falls back to the statement
// for a proxy that does not forward the message.
//
// Payloads of any size work: those beyond NOTIFY's 8000-byte limit are
// stored in realtime_payloads and the notification carries their id, which
// the listener resolves before delivering; stored payloads are deleted
// after Config.PayloadTTL by Cleanup, which a running broker calls
// periodically.
//
// # Channel names
//
// ValidateChannel defines them: 1 to 63 bytes of ASCII letters, digits and
// _ - . : @ ("user:42", "room.lobby"). They are case-sensitive and used
// exactly as given by both LISTEN (always quoted) and pg_notify. Nothing a
// caller passes is concatenated into SQL: values are bind parameters and
// names are validated and quoted.
//
// # Subscribing
//
// Start runs the listener: one goroutine and one connection taken from the
// pool, shared by every subscription of the process. It LISTENs on a
// channel when its first subscription arrives and UNLISTENs after the last
// one leaves, interrupting its wait for notifications to do so. When idle it
// pings the connection; when the connection is lost (killed, server
// restarted, network) it reconnects with exponential backoff and jitter,
// re-LISTENs every channel and queues a gap event (Event.Gap ==
// GapReconnect) to every subscription, so subscribers know to re-sync. Stop
// closes all subscriptions and returns the connection to the pool.
//
//	sub, _ := b.Subscribe(ctx, "user:42")
//	defer sub.Close()
//	for {
//		ev, err := sub.Next(ctx)
//		if err != nil { ... }            // ErrClosed, ErrSlowConsumer, ctx
//		if ev.IsGap() { resync(); continue }
//		handle(ev.Payload)
//	}
//
// Subscribe returns once the channel is LISTENed, so anything published
// afterwards is delivered.
//
// # Slow consumers
//
// Each subscription has a bounded buffer (Config.BufferSize, WithBuffer).
// The listener never waits for a subscriber. When a buffer is full the
// policy applies (Config.SlowPolicy, WithPolicy): DropAndGap drops new
// messages for that subscriber and queues one gap event (GapOverflow) where
// they were lost; Disconnect closes the subscription, whose Next then
// returns ErrSlowConsumer. Other subscribers are unaffected either way.
//
// # Durable streams
//
// CreateStream makes a channel durable: every message published to it,
// from any process, is also appended to realtime_events with a per-channel
// id that increases in commit order, and kept according to the stream's
// retention (MaxAge, MaxLen). A subscriber that was away resumes with
// Subscribe(ctx, ch, From(lastID)) and receives every retained event after
// lastID, then live events, with none missing or repeated; after a
// reconnect a durable subscription catches up the same way instead of
// receiving a gap. A resume id the stream never reached (the stream was
// dropped and created again, so its ids started over) and a DropStream
// under a durable subscription give a GapReset, after which the current
// log and live events follow. ReadStream pages through the log directly.
//
// # Table changes
//
// InstallTableChanges (or TableChangesSQL, to put the DDL in your own
// migrations) adds a row trigger that publishes every INSERT, UPDATE and
// DELETE of a table with the operation, the key and chosen columns; decode
// with DecodeJSON[TableChange[K, D]].
//
// # Browsers
//
// A Bridge is an http.Handler serving WebSockets (github.com/coder/websocket)
// and, through SSE, Server-Sent Events. BridgeConfig.Authorize maps each
// request to an Identity: the channels the client always receives (its own
// user channel) and which rooms it may join. Clients join and leave rooms
// with JSON messages, each join authorized; durable rooms can be resumed
// from an id (SSE uses Last-Event-ID). Every client has a bounded queue and
// a write timeout; a client that falls behind is closed with status 1008
// (policy violation). Sockets are kept alive with pings. All clients of a
// process that join a room share one subscription: each event is encoded
// to JSON once and its bytes are queued to every member without blocking,
// with one writer goroutine per socket and compression off. (Resuming a
// durable room from an id uses a subscription of the client's own.) A gap
// on the shared subscription (reconnect, or the relay itself falling more
// than max(QueueSize, 1024) events behind) is sent to every member.
// Bridge.Broadcast sends to this process's sockets of a channel without
// going through PostgreSQL. Two
// processes with their own brokers and bridges on one database deliver a
// room message to the sockets of both.
//
// # Tenancy
//
// realtime_streams, realtime_events and realtime_payloads carry tenant_id,
// stamped from app.tenant_id, so row-level security can isolate tenants'
// logs (ReadStream and publishing inside a tenant-scoped transaction respect
// the policies). The listener reads stored payloads and stream backlogs on
// its own connection without a tenant, so its role must be able to read
// those tables (owner or BYPASSRLS): give New a separate "system" pool whose
// role has BYPASSRLS and is used for nothing else, and publish through the
// request's tenant-scoped transaction on the app pool (Publish takes any
// DB). TestListenerOnSystemPoolUnderRLS shows this with FORCE ROW LEVEL
// SECURITY on the package's tables. Live delivery is isolated by channel
// names and the bridge's authorization, so give tenants their own channel
// names (e.g. prefixed with the tenant).
//
// # Observability
//
// Stats reports delivered, dropped, reconnects and gaps; Config.Logger and
// BridgeConfig.Logger receive connection problems.
//
// # Limits
//
// NOTIFY delivers only to sessions listening at commit time; messages on
// channels without a stream that are published while a listener is
// reconnecting are lost (the gap event says so). PostgreSQL's notification
// queue (8 GB by default) fills if a listening session stops reading; the
// listener reads continuously and never blocks on subscribers. Publishers of
// one durable channel are serialized by its counter row until they commit.
package realtime
