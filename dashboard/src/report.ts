// Where views send a failed call: the app shows it, or asks for a key when the server wants one.
import { createContext } from 'preact';
import { useContext } from 'preact/hooks';

export const ReportError = createContext<(e: unknown) => void>(() => {});
export const useReportError = () => useContext(ReportError);
