"""The docs test harness: find every fence, run shell/console blocks, gate coverage, check the site."""
