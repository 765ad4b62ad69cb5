"""manage.py register_robot --serial 00e20115 --name Vector-A1B2: prints the robot's token alone on its last line."""

from django.core.management.base import BaseCommand, CommandError

from apps.deployments.services import robot_register
from vectormlops.errors import DomainError


class Command(BaseCommand):
    help = "Register a robot and print its token (shown once: only its hash is stored)."

    def add_arguments(self, parser):
        parser.add_argument("--serial", required=True)
        parser.add_argument("--name", default="")

    def handle(self, *args, serial, name, **options):
        try:
            robot, token = robot_register(serial=serial, name=name)
        except DomainError as exc:
            raise CommandError(exc.message) from exc
        self.stdout.write(f"Registered robot {robot.serial} ({robot.name or 'no name'}). Its token, shown once:")
        self.stdout.write(token)
