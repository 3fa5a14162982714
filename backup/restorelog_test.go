package backup

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
)

// restoreLog reports a table as loaded only once pg_restore has moved on
// to the next entry (single job) or says the item finished (parallel),
// and keeps errors for the error message.
func TestRestoreLogReportsLoadedTables(t *testing.T) {
	var got []string
	log := &restoreLog{tail: &tailBuffer{max: 4096}, loaded: func(l string, bare bool) {
		if bare {
			l = "bare:" + l
		}
		got = append(got, l)
	}}
	out := `pg_restore: connecting to database for restore
pg_restore: creating TABLE "public.items"
pg_restore: creating TABLE "odd "schema".Line Items"
pg_restore: processing data for table "odd "schema".Line Items"
pg_restore: warning: something harmless
pg_restore: processing data for table "public.items"
pg_restore: creating CONSTRAINT "public.items items_pkey"
pg_restore: processing data for table "public.last"
`
	// Written in odd pieces, as a pipe delivers it.
	for len(out) > 0 {
		n := min(len(out), 7)
		_, _ = log.Write([]byte(out[:n]))
		out = out[n:]
	}
	assert.Equal(t, []string{`odd "schema".Line Items`, "public.items"}, got, "public.last is not done until pg_restore exits")
	assert.Contains(t, log.tail.String(), "warning: something harmless")
	assert.NotContains(t, log.tail.String(), "creating TABLE")

	got = nil
	log = &restoreLog{tail: &tailBuffer{max: 4096}, parallel: true, loaded: log.loaded}
	_, _ = log.Write([]byte(strings.Join([]string{
		`pg_restore: processing data for table "public.items"`,
		`pg_restore: launching item 3215 TABLE DATA items`,
		`pg_restore: finished item 3216 TABLE DATA Line Items`,
		`pg_restore: finished item 3217 INDEX items_idx`,
		`pg_restore: error: could not execute query: ERROR:  boom`,
		`Command was: CREATE INDEX ...`,
		``}, "\n")))
	assert.Equal(t, []string{"bare:Line Items"}, got)
	assert.Contains(t, log.tail.String(), "error: could not execute query: ERROR:  boom\nCommand was: CREATE INDEX")
}
