package files_test

import (
	"bytes"
	"context"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/justpg/justpg/files"
)

// The package promises never to serve XML inline: every XML media type
// (RFC 7303: text/xml, application/xml and any type with the +xml suffix)
// is rendered by browsers as an XML document, which runs script through the
// XHTML namespace. With Inline set they must still be attachments with a
// sandbox CSP.
func TestBlackboxXMLTypesNeverInline(t *testing.T) {
	t.Parallel()
	h := newHTTP(t, files.Config{}, files.HandlerConfig{Inline: true})
	ctx := context.Background()
	payload := `<x xmlns:h="http://www.w3.org/1999/xhtml"><h:script>alert(document.domain)</h:script></x>`
	for _, ct := range []string{"application/rss+xml", "application/atom+xml", "application/vnd.evil+xml", "application/xslt+xml", "application/mathml+xml", "text/xsl"} {
		f, err := h.s.Put(ctx, h.db.Pool, strings.NewReader(payload), files.PutOptions{Name: "feed", ContentType: ct})
		require.NoError(t, err, ct)
		resp, _ := h.get(t, f.ID, nil)
		require.Equal(t, http.StatusOK, resp.StatusCode)
		assert.True(t, strings.HasPrefix(resp.Header.Get("Content-Disposition"), "attachment"), "%s served as %s", ct, resp.Header.Get("Content-Disposition"))
		assert.Equal(t, "sandbox", resp.Header.Get("Content-Security-Policy"), ct)
	}
}

// Reader implements io.ReaderAt, whose contract allows parallel ReadAt
// calls on one source (archive/zip, io.SectionReader rely on it). Run with
// -race.
func TestBlackboxParallelReadAt(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	s := newStore(t, files.Config{ChunkSize: files.MinChunkSize})
	ctx := context.Background()
	const size = 64 * files.MinChunkSize
	want := patternBytes(size)
	f, err := s.Put(ctx, db.Pool, bytes.NewReader(want), files.PutOptions{Name: "z.bin"})
	require.NoError(t, err)
	rd, err := s.Get(ctx, db.Pool, f.ID)
	require.NoError(t, err)
	var wg sync.WaitGroup
	bad := make([]bool, 8)
	for g := range 8 {
		wg.Go(func() {
			buf := make([]byte, 3000)
			for i := range 20 {
				off := int64((g*20+i)*7919) % (size - 3000)
				n, err := rd.ReadAt(buf, off)
				if err != nil || n != len(buf) || !bytes.Equal(buf, want[off:off+3000]) {
					bad[g] = true
				}
			}
		})
	}
	wg.Wait()
	for g, b := range bad {
		assert.False(t, b, "goroutine %d read wrong bytes", g)
	}
}
