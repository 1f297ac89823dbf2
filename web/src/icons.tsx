// Small stroke icons (no icon font, no emoji: headless and minimal systems lack emoji fonts).
const PATHS: Record<string, string> = {
  mic: 'M12 3a3 3 0 0 0-3 3v6a3 3 0 0 0 6 0V6a3 3 0 0 0-3-3zM5 11a7 7 0 0 0 14 0M12 18v3',
  micOff: 'M9 9v3a3 3 0 0 0 5.1 2.1M15 9.3V6a3 3 0 0 0-5.9-.8M5 11a7 7 0 0 0 11.6 5.3M19 11a7 7 0 0 1-.4 2.3M12 18v3M3 3l18 18',
  cam: 'M3 7h12v10H3zM15 10l6-3v10l-6-3',
  camOff: 'M3 7h12v10H3zM15 10l6-3v10l-6-3M2 2l20 20',
  screen: 'M3 4h18v12H3zM8 20h8M12 16v4',
  stop: 'M6 6h12v12H6z',
  grid: 'M4 4h7v7H4zM13 4h7v7h-7zM4 13h7v7H4zM13 13h7v7h-7z',
  speaker: 'M3 4h18v11H3zM5 18h4v2H5zM10 18h4v2h-4zM15 18h4v2h-4z',
  chat: 'M4 4h16v12H8l-4 4z',
  people: 'M9 11a4 4 0 1 0 0-8 4 4 0 0 0 0 8zM2 21v-1a7 7 0 0 1 14 0v1M16 3.1a4 4 0 0 1 0 7.8M22 21v-1a7 7 0 0 0-4-6.3',
  leave: 'M21 15.5c-2-1.6-5.6-2.5-9-2.5s-7 .9-9 2.5l2 3 4-1.5v-3M15 14v3l4 1.5',
  pin: 'M9 3h6l-1 6 4 4H6l4-4zM12 13v8',
  clip: 'M21 11l-9 9a5 5 0 0 1-7-7l9-9a3.5 3.5 0 0 1 5 5l-9 9a2 2 0 0 1-3-3l8-8',
  close: 'M5 5l14 14M19 5L5 19',
  eye: 'M2 12s3.6-7 10-7 10 7 10 7-3.6 7-10 7S2 12 2 12zM12 9a3 3 0 1 0 0 6 3 3 0 0 0 0-6z',
  hand: 'M8 13V5.5a1.5 1.5 0 0 1 3 0V12M11 11.5v-8a1.5 1.5 0 0 1 3 0V12M14 12V5.5a1.5 1.5 0 0 1 3 0V14M8 13.5V9.5a1.5 1.5 0 0 0-3 0V15a7 7 0 0 0 7 7h1a5 5 0 0 0 5-5v-7a1.5 1.5 0 0 0-1-1.4',
  record: 'M12 5a7 7 0 1 0 0 14 7 7 0 0 0 0-14zM12 9a3 3 0 1 0 0 6 3 3 0 0 0 0-6z',
};

export type IconName = keyof typeof PATHS;

export function Icon({ name, size = 20 }: { name: IconName; size?: number }) {
  return (
    <svg class="icon" width={size} height={size} viewBox="0 0 24 24" fill="none" stroke="currentColor" stroke-width="2" stroke-linecap="round" stroke-linejoin="round" aria-hidden="true">
      <path d={PATHS[name]} />
    </svg>
  );
}
