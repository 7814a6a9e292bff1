package ledger

import (
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
)

// The pool's size given by ledgerd yields to a pool_max_conns the operator wrote in the DSN,
// and only to that: the name inside a password or a database name is not the parameter.
func TestSetsPoolMaxConns(t *testing.T) {
	cases := []struct {
		dsn  string
		want bool
	}{
		{"postgres://ledger@db.example/ledger?sslmode=disable&pool_max_conns=12", true},
		{"host=db.example user=ledger dbname=ledger pool_max_conns=12", true},
		{"postgres://ledger@db.example/ledger?sslmode=disable", false},
		{"postgres://ledger:pool_max_conns@db.example/ledger", false},
		{"host=db.example user=ledger password='x pool_max_conns=3' dbname=pool_max_conns", false},
	}
	for _, c := range cases {
		cfg, err := pgxpool.ParseConfig(c.dsn)
		if err != nil {
			t.Fatalf("%s: %v", c.dsn, err)
		}
		if got := setsPoolMaxConns(cfg); got != c.want {
			t.Errorf("%s: setsPoolMaxConns = %v, want %v", c.dsn, got, c.want)
		}
	}
}
