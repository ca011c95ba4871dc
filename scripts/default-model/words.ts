/**
 * The small world the default model's corpus talks about: names, things, places, true facts.
 * Everything here is written for this project (no third-party text).
 */

export const NAMES = [
  'Ada',
  'Ben',
  'Cleo',
  'Dan',
  'Eve',
  'Finn',
  'Gus',
  'Hana',
  'Ivy',
  'Jon',
  'Kai',
  'Lea',
  'Max',
  'Nia',
  'Omar',
  'Pia',
  'Rosa',
  'Sam',
  'Tom',
  'Uma',
  'Vera',
  'Will',
  'Zoe',
  'Leo',
] as const

export const CITIES = ['Paris', 'Rome', 'Oslo', 'Lima', 'Cairo', 'Tokyo', 'Delhi', 'Quito', 'Berlin', 'Madrid', 'Dublin', 'Vienna'] as const

export const COLORS = ['red', 'blue', 'green', 'yellow', 'black', 'white', 'brown', 'pink', 'gray', 'purple'] as const

export const ANIMALS = [
  'cat',
  'dog',
  'bird',
  'fox',
  'horse',
  'cow',
  'duck',
  'fish',
  'frog',
  'goat',
  'lion',
  'mouse',
  'owl',
  'pig',
  'sheep',
  'wolf',
  'bear',
  'crow',
] as const

export const FRUITS = ['apple', 'pear', 'plum', 'banana', 'cherry', 'grape', 'lemon', 'mango', 'peach', 'melon'] as const

export const OBJECTS = [
  'ball',
  'book',
  'box',
  'cup',
  'hat',
  'kite',
  'lamp',
  'pen',
  'ring',
  'shoe',
  'key',
  'bag',
  'chair',
  'clock',
  'boat',
  'car',
  'bike',
  'drum',
] as const

export const PLACES = ['park', 'garden', 'school', 'market', 'river', 'forest', 'beach', 'hill', 'farm', 'shop', 'library', 'lake'] as const

export const ADJECTIVES = [
  'big',
  'small',
  'old',
  'new',
  'fast',
  'slow',
  'tall',
  'short',
  'warm',
  'soft',
  'loud',
  'quiet',
  'bright',
  'clean',
] as const

export const FEELINGS = ['happy', 'glad', 'tired', 'sad', 'calm', 'proud', 'hungry', 'sleepy'] as const

export const JOBS = ['baker', 'doctor', 'farmer', 'teacher', 'pilot', 'painter', 'cook', 'driver', 'nurse', 'singer'] as const

export const TIMES = ['In the morning', 'At noon', 'In the evening', 'Later', 'After lunch', 'On Sunday', 'One day', 'Then'] as const

/** Words of the word-order tasks (reversal): short, common, one or two tokens each. */
export const LIST_WORDS = [...COLORS, ...ANIMALS, ...FRUITS, ...OBJECTS] as const

export const PLURALS: Record<string, string> = {
  cherry: 'cherries',
  peach: 'peaches',
  mango: 'mangoes',
  box: 'boxes',
  fish: 'fish',
  sheep: 'sheep',
  mouse: 'mice',
}
export const plural = (w: string): string => PLURALS[w] ?? `${w}s`

/** [subject, colour] pairs that are true. */
export const COLOR_FACTS: [string, string][] = [
  ['the sky', 'blue'],
  ['grass', 'green'],
  ['snow', 'white'],
  ['coal', 'black'],
  ['a banana', 'yellow'],
  ['a cherry', 'red'],
  ['a lemon', 'yellow'],
  ['a plum', 'purple'],
  ['milk', 'white'],
  ['the sea', 'blue'],
  ['a crow', 'black'],
  ['a frog', 'green'],
  ['a pig', 'pink'],
  ['a mouse', 'gray'],
  ['a bear', 'brown'],
  ['a tomato', 'red'],
]

/** [animal, what it says]. */
export const SOUNDS: [string, string][] = [
  ['cat', 'meow'],
  ['dog', 'woof'],
  ['cow', 'moo'],
  ['duck', 'quack'],
  ['sheep', 'baa'],
  ['owl', 'hoot'],
  ['lion', 'roar'],
  ['frog', 'ribbit'],
  ['pig', 'oink'],
  ['mouse', 'squeak'],
  ['horse', 'neigh'],
  ['crow', 'caw'],
]

/** [thing, count, unit]: "a week has 7 days". */
export const COUNT_FACTS: [string, number, string][] = [
  ['a week', 7, 'days'],
  ['a year', 12, 'months'],
  ['a day', 24, 'hours'],
  ['an hour', 60, 'minutes'],
  ['a minute', 60, 'seconds'],
  ['a cat', 4, 'legs'],
  ['a dog', 4, 'legs'],
  ['a bird', 2, 'legs'],
  ['a spider', 8, 'legs'],
  ['a hand', 5, 'fingers'],
  ['a triangle', 3, 'sides'],
  ['a square', 4, 'sides'],
  ['a car', 4, 'wheels'],
  ['a bike', 2, 'wheels'],
]

export const OPPOSITES: [string, string][] = [
  ['big', 'small'],
  ['hot', 'cold'],
  ['fast', 'slow'],
  ['old', 'new'],
  ['tall', 'short'],
  ['happy', 'sad'],
  ['up', 'down'],
  ['day', 'night'],
  ['open', 'closed'],
  ['loud', 'quiet'],
  ['light', 'dark'],
  ['wet', 'dry'],
  ['full', 'empty'],
  ['early', 'late'],
]

/** [animal, where it lives]. */
export const HOMES: [string, string][] = [
  ['fish', 'in water'],
  ['bird', 'in a nest'],
  ['bear', 'in the forest'],
  ['cow', 'on a farm'],
  ['frog', 'near a pond'],
  ['fox', 'in a den'],
  ['owl', 'in a tree'],
  ['duck', 'on the lake'],
  ['goat', 'on the hill'],
]

export const SYSTEM_PROMPTS = [
  'You are a helpful assistant.',
  'You are a friendly assistant. Answer briefly.',
  'You are a small assistant made with MoE Workbench.',
] as const
