package realtime

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/jackc/pgx/v5/pgxpool"
)

// pgNotifyOID is the OID of pg_catalog.pg_notify(text, text). Built-in
// functions have fixed OIDs (assigned in PostgreSQL's catalog sources and
// never reused); TestPgNotifyOID checks it against the server.
const pgNotifyOID = 3036

// errConnBusy is returned when the connection given to Publish is in the
// middle of another operation (a bug in the caller: connections are not
// safe for concurrent use).
var errConnBusy = errors.New("connection busy with another operation")

// errConnClosed is returned for a connection that was closed.
var errConnClosed = errors.New("connection closed")

// publishEphemeral sends one message that is never appended to a durable
// stream (Publish with Ephemeral).
func (b *Broker) publishEphemeral(ctx context.Context, db DB, channel string, payload []byte) error {
	msg := payload
	switch {
	case len(payload) > maxInline || (len(payload) > 0 && payload[0] == envSeparator && len(payload)+2 > maxInline):
		_, err := db.Exec(ctx, b.sqlStoreEphemeral, channel, string(payload))
		return err
	case len(payload) > 0 && payload[0] == envSeparator:
		msg = append([]byte{envSeparator, envEscaped}, payload...)
	case payload == nil:
		msg = []byte{} // nil would be sent as NULL
	}
	if !b.cfg.DisableFastPath {
		switch d := db.(type) {
		case *pgxpool.Pool:
			c, err := d.Acquire(ctx)
			if err != nil {
				return err
			}
			defer c.Release()
			return callNotify(ctx, c.Conn().PgConn(), channel, msg)
		case *pgxpool.Conn:
			if pc := d.Conn().PgConn(); pc.TxStatus() != 'E' {
				return callNotify(ctx, pc, channel, msg)
			}
		case *pgx.Conn:
			if pc := d.PgConn(); pc.TxStatus() != 'E' {
				return callNotify(ctx, pc, channel, msg)
			}
		}
	}
	// A transaction (whose pgx state decides whether it may still run
	// statements), a failed transaction (for PostgreSQL's own error), or any
	// other DB.
	_, err := db.Exec(ctx, `SELECT pg_notify($1::text, $2::text)`, channel, string(msg))
	return err
}

// callNotify runs pg_notify(channel, msg) on pc through PostgreSQL's
// function-call protocol message: the server looks the function up by OID
// and calls it, with no statement to parse, bind, plan or execute. It runs
// in pc's transaction when one is open, else in its own.
//
// pgconn has no method for this message, so the call is sent with its
// Frontend and read back with ReceiveMessage (which keeps pgconn's
// transaction status and notice handling current) up to ReadyForQuery. ctx
// interrupts the call through the socket's deadline; a call that fails
// other than with a server error closes the connection, as pgconn does for
// a statement, since the protocol state is then unknown.
func callNotify(ctx context.Context, pc *pgconn.PgConn, channel string, msg []byte) (err error) {
	if pc.IsClosed() {
		return errConnClosed
	}
	if pc.IsBusy() {
		return errConnBusy
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	broken := false // the protocol state is unknown and pc was closed
	if ctx.Done() != nil {
		fired := make(chan struct{})
		stop := context.AfterFunc(ctx, func() {
			defer close(fired)
			_ = pc.Conn().SetDeadline(time.Unix(1, 0))
		})
		defer func() {
			if stop() {
				return
			}
			<-fired
			if broken {
				err = fmt.Errorf("%w (%w)", ctx.Err(), err)
				return
			}
			// The call completed before the deadline could cut it: the
			// connection is fine, only its deadline must go.
			_ = pc.Conn().SetDeadline(time.Time{})
		}()
	}
	fe := pc.Frontend()
	fe.Send(&pgproto3.FunctionCall{Function: pgNotifyOID, Arguments: [][]byte{[]byte(channel), msg}})
	if err := fe.Flush(); err != nil {
		broken = true
		closeBroken(pc)
		return err
	}
	var serverErr error
	for {
		m, err := pc.ReceiveMessage(context.Background())
		if err != nil {
			broken = true
			closeBroken(pc)
			// The server may have run the call: not safe to retry, whatever
			// pgconn says of a failed ReceiveMessage.
			return sentError{err}
		}
		switch m := m.(type) {
		case *pgproto3.ErrorResponse:
			serverErr = pgconn.ErrorResponseToPgError(m)
		case *pgproto3.ReadyForQuery:
			return serverErr
		}
	}
}

// closeBroken closes a connection whose protocol state is unknown; a pool
// discards it on Release.
func closeBroken(pc *pgconn.PgConn) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_ = pc.Close(ctx)
}

// sentError is a failure after the call was sent: the message may have been
// published, so pgconn.SafeToRetry reports false.
type sentError struct{ err error }

func (e sentError) Error() string { return e.err.Error() }
func (e sentError) Unwrap() error { return e.err }

// SafeToRetry reports false: the server may have run the call.
func (sentError) SafeToRetry() bool { return false }
