package stack_test

import "time"

var timeZero = time.Time{}
