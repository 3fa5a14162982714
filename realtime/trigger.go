package realtime

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/justpg/justpg/internal/ident"
)

// TableChanges describes a table-change trigger: every INSERT, UPDATE and
// DELETE of the table publishes a JSON message
//
//	{"op": "INSERT", "schema": "public", "table": "todos",
//	 "key": {"id": 7}, "data": {"title": "milk", "done": false}}
//
// on Channel, in the writing transaction (so only committed changes are
// delivered). data holds Columns of the new row (of the old row for
// DELETE). Messages go through the same publish function as Publish, so
// large rows and durable streams work for them too. Decode them with
// DecodeJSON[TableChange[K, D]].
type TableChanges struct {
	// Schema of the table; "" means "public".
	Schema string
	// Table name (required).
	Table string
	// Channel to publish on (required).
	Channel string
	// Key columns identifying the row (required, e.g. the primary key).
	Key []string
	// Columns to include as data; may be empty.
	Columns []string
	// Trigger name; "" means "realtime_changes". Use distinct names to
	// publish one table on several channels.
	Trigger string
}

// TableChange is the message a table-change trigger publishes.
type TableChange[K, D any] struct {
	Op     string `json:"op"` // INSERT, UPDATE or DELETE
	Schema string `json:"schema"`
	Table  string `json:"table"`
	Key    K      `json:"key"`
	Data   D      `json:"data"`
}

// TableChangesSQL returns the SQL that installs the trigger (dropping a
// previous trigger of the same name), for review or for a migration tool.
// Every name is validated and quoted; nothing is concatenated unquoted.
func (b *Broker) TableChangesSQL(tc TableChanges) (string, error) {
	if tc.Schema == "" {
		tc.Schema = "public"
	}
	if tc.Trigger == "" {
		tc.Trigger = "realtime_changes"
	}
	if tc.Table == "" {
		return "", errors.New("realtime: TableChanges.Table is required")
	}
	if len(tc.Key) == 0 {
		return "", errors.New("realtime: TableChanges.Key needs at least one column")
	}
	if err := ValidateChannel(tc.Channel); err != nil {
		return "", err
	}
	table, err := ident.Quote(tc.Schema, tc.Table)
	if err != nil {
		return "", fmt.Errorf("realtime: table: %w", err)
	}
	trigger, err := ident.Quote(tc.Trigger)
	if err != nil {
		return "", fmt.Errorf("realtime: trigger: %w", err)
	}
	for _, c := range append(append([]string(nil), tc.Key...), tc.Columns...) {
		if err := ident.Validate(c); err != nil {
			return "", fmt.Errorf("realtime: column: %w", err)
		}
	}
	keys, _ := json.Marshal(tc.Key)
	cols, _ := json.Marshal(append([]string{}, tc.Columns...))
	args := make([]string, 3)
	for i, a := range []string{tc.Channel, string(keys), string(cols)} {
		if args[i], err = ident.Literal(a); err != nil {
			return "", fmt.Errorf("realtime: %w", err)
		}
	}
	var sb strings.Builder
	fmt.Fprintf(&sb, "DROP TRIGGER IF EXISTS %s ON %s;\n", trigger, table)
	fmt.Fprintf(&sb, "CREATE TRIGGER %s AFTER INSERT OR UPDATE OR DELETE ON %s\n", trigger, table)
	fmt.Fprintf(&sb, "    FOR EACH ROW EXECUTE FUNCTION %s(%s);\n", b.qTableChange, strings.Join(args, ", "))
	return sb.String(), nil
}

// InstallTableChanges installs the trigger described by tc (see
// TableChangesSQL). It checks that the table has the named columns.
func (b *Broker) InstallTableChanges(ctx context.Context, db DB, tc TableChanges) error {
	sql, err := b.TableChangesSQL(tc)
	if err != nil {
		return err
	}
	schema := tc.Schema
	if schema == "" {
		schema = "public"
	}
	want := append(append([]string(nil), tc.Key...), tc.Columns...)
	var missing []string
	if err := db.QueryRow(ctx, `SELECT coalesce(pg_catalog.array_agg(w), '{}') FROM pg_catalog.unnest($3::text[]) AS w
		WHERE NOT EXISTS (SELECT 1 FROM pg_attribute a
			JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
			WHERE n.nspname = $1 AND c.relname = $2 AND a.attname = w AND a.attnum > 0 AND NOT a.attisdropped)`,
		schema, tc.Table, want).Scan(&missing); err != nil {
		return fmt.Errorf("realtime: checking columns of %s.%s: %w", schema, tc.Table, err)
	}
	if len(missing) > 0 {
		return fmt.Errorf("realtime: table %s.%s has no column(s) %s", schema, tc.Table, strings.Join(missing, ", "))
	}
	if _, err := db.Exec(ctx, sql); err != nil {
		return fmt.Errorf("realtime: installing trigger on %s.%s: %w", schema, tc.Table, err)
	}
	return nil
}

// RemoveTableChanges drops the trigger named trigger ("" means
// "realtime_changes") from the table.
func (b *Broker) RemoveTableChanges(ctx context.Context, db DB, schema, table, trigger string) error {
	if schema == "" {
		schema = "public"
	}
	if trigger == "" {
		trigger = "realtime_changes"
	}
	qt, err := ident.Quote(schema, table)
	if err != nil {
		return fmt.Errorf("realtime: table: %w", err)
	}
	qtr, err := ident.Quote(trigger)
	if err != nil {
		return fmt.Errorf("realtime: trigger: %w", err)
	}
	if _, err := db.Exec(ctx, "DROP TRIGGER IF EXISTS "+qtr+" ON "+qt); err != nil {
		return fmt.Errorf("realtime: removing trigger from %s.%s: %w", schema, table, err)
	}
	return nil
}
