"""Notifications and reminders (事中守约提醒): one service to notify a consumer or a merchant member.

A Django app of its own (label ``notifications``) inside the pay-later core, because reminders read credit
orders, agreements and disputes, which the lower apps may not import. See docs/notifications.md.
"""
