package pgtest

import (
	"errors"
	"testing"
)

// OneWinner checks the outcome of a race between callers of one operation
// that only one may win (two sign-ups with one address, two uses of one
// token, two Stops): exactly one error is nil and every other wraps loser.
func OneWinner(t testing.TB, errs []error, loser error) {
	t.Helper()
	won := 0
	for i, err := range errs {
		switch {
		case err == nil:
			won++
		case !errors.Is(err, loser):
			t.Errorf("caller %d: got %v, want nil or %v", i, err, loser)
		}
	}
	if won != 1 {
		t.Errorf("%d of %d callers succeeded, want exactly 1", won, len(errs))
	}
}
