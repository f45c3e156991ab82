from django.core.management.base import BaseCommand

from generation.enhance import enhance_prompt
from generation.enhance.styles import FAMILIES


class Command(BaseCommand):
    help = "Print the enhanced prompt of each PROMPT, one line each, in order."

    def add_arguments(self, parser):
        parser.add_argument("prompts", nargs="+", metavar="PROMPT")
        parser.add_argument("--no-nsfw", action="store_true", help="Enhance as for allowNSFW: false")
        parser.add_argument("--style", choices=sorted(FAMILIES), help="Model family (default: ENHANCE_STYLE)")
        parser.add_argument("--negative", action="store_true", help="Print the negative prompt on the next line")

    def handle(self, *args, prompts, no_nsfw, style, negative, **options):
        for prompt in prompts:
            enhanced = enhance_prompt(prompt, allow_nsfw=not no_nsfw, style=style)
            self.stdout.write(enhanced.prompt)
            if negative:
                self.stdout.write(enhanced.negative_prompt)
