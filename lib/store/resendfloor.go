package store

import (
	"time"

	"im2000/lib/conf"
)

// maxResendFloor bounds resendfloor, as notifyd bounds its durations: a
// year.
const maxResendFloor = 365 * 24 * time.Hour

// ResendFloor is the setting resendfloor of d, the floor a Resend keeps
// after a recipient's last notification, bounded to between a second and
// a year: the one reading of it for im2000-status --resend on the store's
// host and im2000-submitd's MSOAP Resend alike.
func ResendFloor(d conf.Dir) (time.Duration, error) {
	n, err := d.Num("resendfloor")
	if err != nil {
		return 0, err
	}
	return min(max(time.Duration(n)*time.Second, time.Second), maxResendFloor), nil
}
