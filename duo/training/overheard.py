"""More speech the assistant overhears and must ignore: people talking to each other, and text read aloud.

What the first person-to-person templates (`templates.PEOPLE`) had too few of:

- one person addressing another in the second person, often with a request or a question ("are you ready
  to order", "can you set the table", "you're listening to..."): a waiter, a radio host, a teacher, a coach,
  family at home. Requests in form, but to someone else: the cue is who is spoken to (a name, a role, the
  situation), not whether it is a request;
- expository monologue read or spoken aloud (a documentary, a lecture, an audiobook, a cooking show, a
  tutorial): long, well-formed, and cut anywhere it looks unfinished, so it must be judged `ignore`, not
  `incomplete` — including the tutorial's own imperatives ("now fold the egg whites in gently").

Same conventions as `templates`: `{slot}` from `templates.SLOTS`.
"""

from __future__ import annotations

# One person speaking to another (labelled ignore).
ADDRESSED: list[str] = [
    "are you ready to order or do you need a few more minutes",
    "can I get you something to drink while you wait",
    "would you like to see the dessert menu",
    "your table for {n} is ready if you'd like to follow me",
    "how would you like your steak cooked",
    "would you like a bag for that",
    "your total comes to {money} dollars and fifty cents",
    "do you have a loyalty card with us",
    "you're listening to the morning show and it's {time}",
    "stay with us after the break we'll be talking about {show}",
    "call us now and you could win {money} dollars",
    "thanks for tuning in you've been listening to {genre} all night",
    "and you caller what do you think about {show}",
    "{name} can you set the table please",
    "{kin} can you turn the lights off when you go upstairs",
    "{name} could you grab the {food} out of the fridge",
    "did you finish your homework {kin}",
    "you need to brush your teeth before bed",
    "you did really well today sweetie",
    "can you help your brother with the dishes",
    "will you call {name} and tell her we're running late",
    "you can't have dessert until you finish your {food}",
    "okay class open your books to page {n}",
    "can anyone tell me what {word} means",
    "you have {n} minutes left on the test",
    "keep your back straight and breathe out as you lift",
    "you've got this two more laps",
    "pass the ball {name} you're wide open",
    "thank you for calling how can I help you today",
    "can you read me the number on the back of your card",
    "please fasten your seatbelts we'll be landing in {n} minutes",
    "if you look to your left you'll see the old city walls",
    "take this twice a day with food and call me if it gets worse",
    "sir you dropped your wallet",
    "excuse me do you know how to get to {place}",
    "could you hold the door for me",
    "hey {name} do you want to come over {day}",
    "you should try the {food} here it's amazing",
    "tell me what happened at school {kin}",
    "{name} turn that music down I'm on the phone",
    "play with your sister nicely please",
    "set an alarm on your phone so you don't forget {name}",
    "{kin} can you remind me to {task} when we get home",
    "you remember where we parked right",
    "{kin} what time is your flight {day}",
]

# Expository speech read or spoken aloud (labelled ignore).
MONOLOGUE: list[str] = [
    "the heart pumps about five liters of blood every minute through a network of vessels that would "
    "stretch around the world twice",
    "in this video we're going to look at how {thing} works and why it matters for all of us",
    "first preheat the oven to {n} degrees then grease a baking tin and set it aside while you make the batter",
    "now fold the egg whites in gently so you keep as much air in the mixture as you can",
    "once the onions are soft add the garlic and cook for another {n} minutes stirring all the time",
    "the Roman Empire at its height stretched from Britain in the north to Egypt in the south",
    "photosynthesis turns sunlight water and carbon dioxide into the sugar that feeds almost every living thing",
    "chapter {n} it was late in the evening when {name} finally reached the old house at the end of the road",
    "she opened the letter slowly knowing that whatever it said would change everything",
    "the city of {city} was founded more than a thousand years ago on the banks of a wide river",
    "to understand {word} we first have to go back to the early days of the industrial revolution",
    "imagine you are standing on the surface of Mars looking up at a pale pink sky",
    "lions spend up to twenty hours a day resting and do most of their hunting after dark",
    "next take the left panel and attach it to the base using the four short screws",
    "make sure the power is switched off before you remove the cover",
    "the main cause of {thing} is still debated among scientists today",
    "in the last lecture we saw that supply and demand set the price so today let's ask what happens when",
    "welcome back to the channel today I'm going to show you my morning routine",
    "the ancient Egyptians built the pyramids as tombs for their kings and queens",
    "every year millions of birds fly thousands of kilometers to reach warmer places",
    "according to the report {country} will need to double its investment in clean energy by 2030",
    "the first thing you'll notice about {city} is how green it is",
    "our story begins in a small village in {country} where a young girl dreams of the sea",
    "let's take a closer look at what happens inside the cell when it divides",
    "the recipe calls for {n} grams of butter but you can use oil if you prefer",
    "water boils at one hundred degrees at sea level but at a lower temperature in the mountains",
    "the invention of the printing press made books cheaper and spread ideas across Europe",
    "you might think that {thing} is a modern problem but people have worried about it for centuries",
    "after the war the country rebuilt its cities and its economy grew quickly for two decades",
    "remember to stretch for at least {n} minutes before you start running",
    "step three connect the red wire to the terminal marked positive",
    "jazz was born in New Orleans at the start of the twentieth century",
    "the moon is slowly moving away from the Earth by about four centimeters a year",
    "our next guest has written {n} books about {thing} and joins us from {city}",
    "as you can see from this chart sales went up every quarter last year",
    "before we begin please make sure your phones are switched off",
    "the museum's collection includes more than {money} thousand paintings drawings and sculptures",
    "whisk the eggs and sugar together until the mixture is pale and thick",
    "the Danube flows through ten countries before it reaches the Black Sea",
    "scientists believe the universe began with the big bang nearly fourteen billion years ago",
]
