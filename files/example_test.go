package files_test

import (
	"context"
	"fmt"
	"io"
	"log"
	"strings"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/justpg/justpg/files"
	"github.com/justpg/justpg/internal/pgtest"
)

// exampleDB gives the example a fresh database on the test server.
func exampleDB() (*pgxpool.Pool, func()) {
	db, done := pgtest.ForExample()
	return db.Pool, done
}

func Example() {
	ctx := context.Background()
	pool, done := exampleDB()
	defer done()

	if err := files.Migrate(ctx, pool); err != nil {
		log.Fatal(err)
	}
	store, err := files.New(files.Config{MaxSize: 10 << 20, AllowedTypes: []string{"text/*", "image/*"}})
	if err != nil {
		log.Fatal(err)
	}

	// Put streams any io.Reader; the content type is detected when not given.
	f, err := store.Put(ctx, pool, strings.NewReader("Hello, PostgreSQL!"), files.PutOptions{
		Name: "hello.txt", Owner: "user-42", Metadata: []byte(`{"lang": "en"}`),
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(f.Name, f.ContentType, f.Size, f.Checksum()[:16])

	// Get returns a lazy io.ReadSeeker.
	r, err := store.Get(ctx, pool, f.ID)
	if err != nil {
		log.Fatal(err)
	}
	if _, err := r.Seek(7, io.SeekStart); err != nil {
		log.Fatal(err)
	}
	rest, _ := io.ReadAll(r)
	fmt.Println(string(rest))

	page, _ := store.List(ctx, pool, files.ListOptions{Owner: "user-42", HasOwner: true})
	fmt.Println(len(page.Files), "file(s) of user-42")

	_, err = store.Put(ctx, pool, strings.NewReader("%PDF-1.7 ..."), files.PutOptions{Name: "x.pdf"})
	fmt.Println(err)
	// Output:
	// hello.txt text/plain; charset=utf-8 18 f4948e85c979ed1a
	// PostgreSQL!
	// 1 file(s) of user-42
	// files: content type not allowed: application/pdf
}
