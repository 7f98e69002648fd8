package remote

import (
	"testing"
	"time"

	"im2000/lib/wire/msoap"
)

// TestResendAnswers: an answer to Resend that im2000-submitd never gives
// is refused, not shown (review: year 1, year 36812, -1 recipients).
func TestResendAnswers(t *testing.T) {
	now := time.Unix(1800000000, 0)
	year := uint64(now.Add(365 * 24 * time.Hour).Unix())
	for _, c := range []struct {
		r  msoap.ResendOK
		ok bool
	}{
		{msoap.ResendOK{}, true},
		{msoap.ResendOK{Recipients: 3}, true},
		{msoap.ResendOK{Recipients: 3, Held: 3, Until: year}, true},
		{msoap.ResendOK{Recipients: 1<<31 + 1}, false},
		{msoap.ResendOK{Recipients: 1<<64 - 1, Held: 1<<64 - 1, Until: year}, false},
		{msoap.ResendOK{Recipients: 1, Held: 2, Until: year}, false},
		{msoap.ResendOK{Recipients: 1, Held: 1}, false},
		{msoap.ResendOK{Recipients: 1, Until: year}, false},
		{msoap.ResendOK{Recipients: 1, Held: 1, Until: 1<<40 - 1}, false},
		{msoap.ResendOK{Recipients: 1, Held: 1, Until: year + 2*86400}, false},
	} {
		if err := checkResent(&c.r, now); (err == nil) != c.ok {
			t.Errorf("%+v: %v", c.r, err)
		}
	}
}
