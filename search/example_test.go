package search_test

import (
	"context"
	"fmt"
	"log"

	"github.com/justpg/justpg/internal/pgtest"
	"github.com/justpg/justpg/search"
)

func Example() {
	ctx := context.Background()
	db, dropDB := pgtest.ForExample() // an application: pgxpool.New(ctx, os.Getenv("DATABASE_URL"))
	defer dropDB()
	pool := db.Pool
	_, err := pool.Exec(ctx, `
		CREATE TABLE IF NOT EXISTS books (id int PRIMARY KEY, title text, blurb text, year int);
		TRUNCATE books;
		INSERT INTO books VALUES
			(1, 'PostgreSQL Internals', 'How the database engine works.', 2023),
			(2, 'The Received Wisdom', 'Essays on what we received.', 1998),
			(3, 'Cooking for Engineers', 'Recipes, with <b>diagrams</b>.', 2010)`)
	if err != nil {
		log.Fatal(err)
	}

	ix, err := search.New(search.Config{
		Table:            "books",
		Key:              "id",
		Fields:           []search.Field{{Column: "title", Weight: search.A}, {Column: "blurb", Weight: search.C}},
		Filters:          []string{"year"},
		CreateExtensions: true,
	})
	if err != nil {
		log.Fatal(err)
	}
	if err := ix.Create(ctx, pool); err != nil {
		log.Fatal(err)
	}
	if err := ix.RefreshWords(ctx, pool); err != nil {
		log.Fatal(err)
	}

	for _, text := range []string{"postgr", "recieved", "enginering -cooking"} {
		res, err := ix.Search(ctx, pool, search.Query{Text: text, Highlight: true})
		if err != nil {
			log.Fatal(err)
		}
		for _, h := range res.Hits {
			fmt.Printf("%-20q -> %s (%s): %s\n", text, h.Key, h.Match, h.Highlights["title"])
		}
	}
	res, err := ix.Search(ctx, pool, search.Query{Text: "recipes", Filters: []search.Filter{search.Ge("year", 2000)}})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("recipes since 2000:", len(res.Hits))
	s, err := ix.Suggest(ctx, pool, "wisdon", 1)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("did you mean:", s[0].Word)
	// Output:
	// "postgr"             -> 1 (prefix): <mark>PostgreSQL</mark> Internals
	// "recieved"           -> 2 (typo): The <mark>Received</mark> Wisdom
	// "enginering -cooking" -> 1 (exact): PostgreSQL Internals
	// recipes since 2000: 1
	// did you mean: wisdom
}
